//! The Go test modules under `tests/` (dtm's SDK, go-zero and kratos apps), compiled with
//! `go test -c` outside the source tree; Go keeps its module and build caches where it always
//! does (GOPATH, GOCACHE).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Compiles the Go module `tests/<module>` with `go` into one test binary and returns its path.
pub fn build_tests(go: &Path, module: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests")
        .join(module);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(module)
        .join(format!("{module}.test"));
    let started = Instant::now();
    super::run_checked(
        Command::new(go)
            .args(["test", "-c", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&dir),
        &format!("building tests/{module}"),
    );
    println!("go test -c of tests/{module} took {:?}", started.elapsed());
    out
}

/// Runs the Go tests of `binary` (built from `tests/<module>`) matching `pattern` with `env`,
/// against `host`; panics unless they pass, with their output and the host log's last 150
/// lines. Returns their output.
pub async fn run_tests(
    binary: &Path,
    module: &str,
    pattern: &str,
    env: &[(String, String)],
    host: &super::Host,
) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests")
        .join(module);
    let started = Instant::now();
    let output = tokio::process::Command::new(binary)
        .args(["-test.run", pattern, "-test.v", "-test.timeout", "5m"])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .expect("run the Go tests");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let log = host.log();
    let tail: Vec<&str> = log.lines().rev().take(150).collect();
    assert!(
        output.status.success(),
        "tests/{module} {pattern} failed ({}):\n{text}\n--- host log (last 150 lines):\n{}",
        output.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        text.contains("--- PASS"),
        "no Go test matched {pattern}:\n{text}"
    );
    println!("{text}\n{pattern}: {:?}", started.elapsed());
    text
}
