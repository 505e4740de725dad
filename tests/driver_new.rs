//! `dtm-host driver new NAME --lang rust|python|js`: the skeleton it writes builds with the
//! command its README gives, fails `driver check` on its own vectors until the parse rule is
//! filled in, then passes them and serves a saga through the real binary.
//!
//! The Rust skeleton builds with cargo (its target directory is kept in `target/driver-new`);
//! the Python and JavaScript ones with the tools tests/common/polyglot.rs installs (skipped
//! without python3 / node, as there).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::driver::{check_vectors, saga_succeeds};
use common::grpc::GrpcBusi;
use common::polyglot::{build_dir, Lang};
use common::{run_to_exit, Host};

const NAME: &str = "dtm-driver-acme";

/// A parse rule that passes the skeleton's vectors (dtm's protocol1 rule), in each language,
/// put in place of the skeleton's "not written yet" line.
const RUST_RULE: &str = r#"let (server, method) = match uri.split_once("://") {
            Some((scheme, rest)) => {
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let cut = path[1..].find('/').map_or(0, |at| at + 1);
                (format!("{scheme}://{host}{}", &path[..cut]), path[cut..].to_owned())
            }
            None => {
                let at = uri.find('/').ok_or(format!("bad url: '{uri}'. no '/' found"))?;
                (uri[..at].to_owned(), uri[at..].to_owned())
            }
        };
        Ok(ServerMethod { server, method })"#;

const PYTHON_RULE: &str = r#"if "://" in uri:
            scheme, rest = uri.split("://", 1)
            at = rest.find("/")
            host, path = (rest, "") if at < 0 else (rest[:at], rest[at:])
            cut = path.find("/", 1)
            cut = 0 if cut < 0 else cut
            return ServerMethod("%s://%s%s" % (scheme, host, path[:cut]), path[cut:])
        at = uri.find("/")
        if at < 0:
            raise Err("bad url: '%s'. no '/' found" % uri)
        return ServerMethod(uri[:at], uri[at:])"#;

const JS_RULE: &str = r#"const split = uri.indexOf("://");
  if (split >= 0) {
    const rest = uri.slice(split + 3);
    const at = rest.indexOf("/");
    const [host, path] = at < 0 ? [rest, ""] : [rest.slice(0, at), rest.slice(at)];
    const cut = Math.max(path.indexOf("/", 1), 0);
    return { server: `${uri.slice(0, split)}://${host}${path.slice(0, cut)}`, method: path.slice(cut) };
  }
  const at = uri.indexOf("/");
  if (at < 0) {
    throw `bad url: '${uri}'. no '/' found`;
  }
  return { server: uri.slice(0, at), method: uri.slice(at) };"#;

/// Runs `dtm-host driver new` for `lang` in a new directory; returns it and the skeleton.
fn new_skeleton(lang: &str) -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let (status, output) = run_to_exit(
        &[],
        &[
            "driver",
            "new",
            NAME,
            "--lang",
            lang,
            "--dir",
            parent.path().to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{output}");
    let dir = parent.path().join(NAME);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains("dtm-host driver check") && !readme.contains("{{"),
        "{readme}"
    );
    (parent, dir)
}

/// Replaces the line of `file` that says the rule is not written yet with `rule`.
fn fill_in(file: &Path, rule: &str) {
    let source = std::fs::read_to_string(file).unwrap();
    let line = source
        .lines()
        .find(|l| l.contains("parse-server-method is not written yet"))
        .unwrap_or_else(|| panic!("no rule to fill in: {source}"));
    let indent = &line[..line.len() - line.trim_start().len()];
    std::fs::write(file, source.replace(line, &format!("{indent}{rule}"))).unwrap();
}

/// The skeleton's vectors fail on `unfilled`, pass on `filled`, and a host running `filled`
/// serves a saga whose branches are `acme:///host:port/…` URLs.
async fn fails_then_passes_and_serves(dir: &Path, unfilled: &Path, filled: &Path) {
    let (passed, output) = check_vectors(unfilled, &dir.join("vectors.json"));
    assert!(!passed && output.contains("0 passed, 3 failed"), "{output}");
    let (passed, output) = check_vectors(filled, &dir.join("vectors.json"));
    assert!(
        passed && output.contains(&format!("{NAME}: 3 passed, 0 failed")),
        "{output}"
    );

    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", NAME),
        ("MICRO_SERVICE_DRIVER_PATH", filled.to_str().unwrap()),
    ])
    .await;
    let busi = GrpcBusi::start().await;
    saga_succeeds(&host, &busi, "driver-new", |method| {
        format!("acme:///{}{method}", busi.server)
    })
    .await;
}

/// Builds the Rust skeleton in `dir` with its README's command; returns a copy of the
/// component (the next build overwrites the file).
fn cargo_build(dir: &Path, copy_to: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/driver-new");
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/dtm_driver_acme.wasm");
    std::fs::copy(&wasm, copy_to).unwrap();
    copy_to.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_driver_builds_checks_and_serves() {
    let (parent, dir) = new_skeleton("rust");
    let unfilled = cargo_build(&dir, &parent.path().join("unfilled.wasm"));
    fill_in(&dir.join("src/lib.rs"), RUST_RULE);
    let filled = cargo_build(&dir, &parent.path().join("filled.wasm"));
    fails_then_passes_and_serves(&dir, &unfilled, &filled).await;
}

async fn polyglot(lang: Lang, flag: &str, source: &str, rule: &str) {
    let (_parent, dir) = new_skeleton(flag);
    let wit = dir.join("wit");
    let Some(unfilled) = build_dir(lang, &dir, &wit, NAME) else {
        return;
    };
    fill_in(&dir.join(source), rule);
    let filled = build_dir(lang, &dir, &wit, NAME).unwrap();
    fails_then_passes_and_serves(&dir, &unfilled, &filled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_driver_builds_checks_and_serves() {
    polyglot(Lang::Python, "python", "app.py", PYTHON_RULE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_javascript_driver_builds_checks_and_serves() {
    polyglot(Lang::JavaScript, "js", "driver.js", JS_RULE).await;
}
