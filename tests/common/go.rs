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
    let output = Command::new(go)
        .args(["test", "-c", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&dir)
        .output()
        .expect("run go");
    assert!(
        output.status.success(),
        "building tests/{module} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("go test -c of tests/{module} took {:?}", started.elapsed());
    out
}
