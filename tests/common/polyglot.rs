//! Drivers written in Python (componentize-py) and JavaScript (ComponentizeJS), built from
//! their sources in `guest-drivers-py/` and `guest-drivers-js/`.
//!
//! ```text
//! let Some(wasm) = build(Lang::JavaScript, "protocol1") else { return }; // tools missing: skip
//! ```
//!
//! The build tools are installed on first use, at pinned versions, under `target/polyglot/`
//! (a venv for componentize-py, an npm prefix for ComponentizeJS); a built `.wasm` is kept in
//! `target/polyglot/built/`, named by the hash of its sources, the contract and the tool, so a
//! rerun builds nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use dtm_host::drivers::sha256_hex;
use dtm_host::drivers::skeleton::{COMPONENTIZE_JS, COMPONENTIZE_PY};
use test_servers::Program;

#[derive(Clone, Copy, Debug)]
pub enum Lang {
    Python,
    JavaScript,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tools_dir() -> PathBuf {
    repo().join("target/polyglot")
}

/// A line past the harness's output capture: build times are worth seeing.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "polyglot: {line}");
}

/// Runs `command`; panics with its output, naming `what`, unless it succeeds.
fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `componentize-py` at [`COMPONENTIZE_PY`], installed into `target/polyglot/py` (a venv) on
/// first use; `None` when python3 is missing (skip).
fn componentize_py() -> Option<PathBuf> {
    let python = Program::PYTHON.require()?;
    static SETUP: Mutex<()> = Mutex::new(());
    let _once = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let venv = tools_dir().join("py");
    let tool = venv.join("bin/componentize-py");
    let installed = Command::new(&tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim_end()
                .ends_with(COMPONENTIZE_PY)
        });
    if !installed {
        let started = Instant::now();
        run(
            Command::new(python).args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (Debian: apt-get install python3-venv)",
        );
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
            "pip install componentize-py",
        );
        note(&format!(
            "installed componentize-py {COMPONENTIZE_PY} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Some(tool)
}

/// ComponentizeJS's CLI at [`COMPONENTIZE_JS`], installed with npm under `target/polyglot/node`
/// on first use; `None` when node or npm is missing (skip).
fn componentize_js() -> Option<PathBuf> {
    Program::NODE.require()?;
    let npm = Program::NPM.require()?;
    static SETUP: Mutex<()> = Mutex::new(());
    let _once = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = tools_dir().join("node");
    let package = prefix.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let installed = std::fs::read_to_string(&package)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|p| p["version"] == COMPONENTIZE_JS);
    if !installed {
        let started = Instant::now();
        std::fs::create_dir_all(&prefix).unwrap();
        run(
            Command::new(npm)
                .current_dir(&prefix)
                .args(["install", "--no-audit", "--no-fund", "--save-exact"])
                .arg(format!(
                    "@bytecodealliance/componentize-js@{COMPONENTIZE_JS}"
                )),
            "npm install @bytecodealliance/componentize-js",
        );
        note(&format!(
            "installed componentize-js {COMPONENTIZE_JS} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Some(prefix.join("node_modules/.bin/componentize-js"))
}

/// The files of a driver's source directory (build output and caches aside), sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["node_modules", "__pycache__"].contains(&name.as_str()) || name.ends_with(".wasm") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The component of driver `name` in `lang` (`guest-drivers-py/<name>` or
/// `guest-drivers-js/<name>`), built against `wit/`; see [`build_dir`].
pub fn build(lang: Lang, name: &str) -> Option<PathBuf> {
    let dir = match lang {
        Lang::Python => "guest-drivers-py",
        Lang::JavaScript => "guest-drivers-js",
    };
    build_dir(
        lang,
        &repo().join(dir).join(name),
        &repo().join("wit"),
        name,
    )
}

/// The component of the driver whose sources are in `src` (`app.py` or `driver.js`), built
/// against the contract in `wit` on first use, then taken from `target/polyglot/built/`
/// while its sources, the contract and the tool version are unchanged. `None`: the language's
/// tools are missing (skip).
pub fn build_dir(lang: Lang, src: &Path, wit: &Path, name: &str) -> Option<PathBuf> {
    let (tool, version) = match lang {
        Lang::Python => (
            componentize_py()?,
            format!("componentize-py {COMPONENTIZE_PY}"),
        ),
        Lang::JavaScript => (
            componentize_js()?,
            format!("componentize-js {COMPONENTIZE_JS}"),
        ),
    };
    let mut key = Vec::from(version.as_bytes());
    for root in [src, wit] {
        for file in sources(root) {
            key.extend_from_slice(
                file.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes(),
            );
            key.push(0);
            key.extend_from_slice(&std::fs::read(&file).unwrap());
            key.push(0);
        }
    }
    let lang_name = format!("{lang:?}").to_lowercase();
    let built = tools_dir().join("built");
    let out = built.join(format!(
        "{lang_name}-{name}-{}.wasm",
        &sha256_hex(&key)[..16]
    ));
    if out.exists() {
        note(&format!(
            "{lang_name} {name}: cached build {}",
            out.display()
        ));
        return Some(out);
    }
    std::fs::create_dir_all(&built).unwrap();
    let temporary = out.with_extension(format!("{}.tmp", std::process::id()));
    let started = Instant::now();
    let mut command = match lang {
        Lang::Python => {
            let mut command = Command::new(&tool);
            command
                .env_remove("VIRTUAL_ENV")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .arg("-d")
                .arg(wit)
                .args(["-w", "driver", "componentize", "-p"])
                .arg(src)
                .arg("app")
                .arg("-o")
                .arg(&temporary);
            command
        }
        Lang::JavaScript => {
            let mut command = Command::new(&tool);
            command
                .arg(src.join("driver.js"))
                .arg("--wit")
                .arg(wit)
                .args(["-n", "driver", "-o"])
                .arg(&temporary)
                // No WASI at all: the driver needs only the contract's imports.
                .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"]);
            command
        }
    };
    run(&mut command, &format!("building {lang_name} driver {name}"));
    std::fs::rename(&temporary, &out).unwrap();
    note(&format!(
        "{lang_name} {name}: built in {:.1} s, {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&out).unwrap().len()
    ));
    Some(out)
}
