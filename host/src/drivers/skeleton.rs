//! `dtm-host driver new`: a ready-to-build driver in Rust, Python or JavaScript, written from
//! the templates in `host/templates/driver/` with a copy of `wit/driver.wit`, so the driver
//! builds against the contract of the dtm-host that wrote it. A Rust driver gets the guest
//! SDK (`guest-drivers/sdk`) in `vendor/sdk`: it builds with nothing but crates.io.

use std::path::{Path, PathBuf};

/// The componentize-py release the Python skeleton names (and tests/common/polyglot.rs builds
/// the repository's Python drivers with).
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The ComponentizeJS release the JavaScript skeleton names (and the tests build with).
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The language of a new driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
}

#[derive(Debug, thiserror::Error)]
pub enum SkeletonError {
    #[error(
        "driver name '{0}': use 1 to 64 lowercase letters, digits and '-', starting with a letter"
    )]
    BadName(String),
    #[error("{0} already exists; choose another name or directory")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

const WIT: &str = include_str!("../../../wit/driver.wit");
const README: &str = include_str!("../../templates/driver/README.md");
const VECTORS: &str = include_str!("../../templates/driver/vectors.json");
const CONFIG: &str = include_str!("../../templates/driver/config.yml");

impl Language {
    /// The files only this language has: (path in the skeleton, template).
    fn sources(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::Rust => &[
                (
                    "Cargo.toml",
                    include_str!("../../templates/driver/rust/Cargo.toml"),
                ),
                (
                    "src/lib.rs",
                    include_str!("../../templates/driver/rust/src/lib.rs"),
                ),
                (
                    "vendor/sdk/Cargo.toml",
                    include_str!("../../templates/driver/rust/vendor-sdk/Cargo.toml"),
                ),
                (
                    "vendor/sdk/src/lib.rs",
                    include_str!("../../../guest-drivers/sdk/src/lib.rs"),
                ),
            ],
            Language::Python => &[(
                "app.py",
                include_str!("../../templates/driver/python/app.py"),
            )],
            Language::JavaScript => &[(
                "driver.js",
                include_str!("../../templates/driver/js/driver.js"),
            )],
        }
    }

    /// The source file the author fills in.
    fn source(self) -> &'static str {
        match self {
            Language::Rust => "src/lib.rs",
            Language::Python => "app.py",
            Language::JavaScript => "driver.js",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "js",
        }
    }

    /// The component the build command writes, relative to the skeleton.
    fn wasm(self, name: &str) -> String {
        match self {
            Language::Rust => format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
            Language::Python | Language::JavaScript => format!("{name}.wasm"),
        }
    }

    /// The one command that builds the component; a comment names what it needs.
    fn build(self, name: &str) -> String {
        match self {
            Language::Rust => "cargo build --release --target wasm32-wasip2   \
                 # rustup target add wasm32-wasip2"
                .to_owned(),
            Language::Python => format!(
                "componentize-py -d wit -w driver componentize app -o {name}.wasm   \
                 # pip install componentize-py=={COMPONENTIZE_PY}"
            ),
            Language::JavaScript => format!(
                "npx --yes @bytecodealliance/componentize-js@{COMPONENTIZE_JS} driver.js \
                 --wit wit -n driver -o {name}.wasm -d stdio random clocks http fetch-event"
            ),
        }
    }
}

/// Writes driver `name` in `language` into `parent/name` (which must not exist yet); returns
/// that directory.
pub fn write(name: &str, language: Language, parent: &Path) -> Result<PathBuf, SkeletonError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(SkeletonError::BadName(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(SkeletonError::Exists(dir));
    }
    let sources = language.sources();
    let scheme = name.strip_prefix("dtm-driver-").unwrap_or(name);
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{scheme}}", scheme)
            .replace("{{crate}}", name)
            .replace("{{lang}}", language.name())
            .replace("{{version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{source}}", language.source())
            .replace("{{build}}", &language.build(name))
            .replace("{{wasm}}", &language.wasm(name))
    };
    let common = [
        ("README.md", README),
        ("vectors.json", VECTORS),
        ("config.yml", CONFIG),
    ];
    for (path, template) in common.iter().chain(sources) {
        write_file(&dir.join(path), &fill(template))?;
    }
    write_file(&dir.join("wit/driver.wit"), WIT)?;
    Ok(dir)
}

fn write_file(path: &Path, text: &str) -> Result<(), SkeletonError> {
    let failed = |source| SkeletonError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::write(path, text).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_schemes_crates_and_components() {
        let parent = tempfile::tempdir().unwrap();
        let dir = write("dtm-driver-acme", Language::Rust, parent.path()).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        assert!(read("src/lib.rs").contains(r#"&["acme"]"#));
        assert!(read("vendor/sdk/src/lib.rs").contains("macro_rules! export_driver"));
        assert!(read("Cargo.toml").contains(r#"name = "dtm-driver-acme""#));
        assert!(read("config.yml")
            .contains("DriverPath: target/wasm32-wasip2/release/dtm_driver_acme.wasm"));
        assert!(read("vectors.json").contains(r#""uri": "acme:///localhost:36790"#));
        assert_eq!(read("wit/driver.wit"), WIT);
        assert!(!read("README.md").contains("{{"), "{}", read("README.md"));
    }

    #[test]
    fn bad_names_and_existing_directories_are_refused() {
        let parent = tempfile::tempdir().unwrap();
        for name in ["", "Acme", "1acme", "ac me", "acme/x", &"a".repeat(65)] {
            let error = write(name, Language::Python, parent.path()).unwrap_err();
            assert!(
                matches!(error, SkeletonError::BadName(_)),
                "{name}: {error}"
            );
        }
        write("acme", Language::JavaScript, parent.path()).unwrap();
        let error = write("acme", Language::Python, parent.path()).unwrap_err();
        assert!(matches!(error, SkeletonError::Exists(_)), "{error}");
    }
}
