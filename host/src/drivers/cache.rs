//! Compiled drivers kept on disk, keyed by the `.wasm` file's SHA-256 and the engine's
//! compatibility hash (wasmtime version and settings), so a restart skips compilation.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The SHA-256 of a driver file, in hex: its cache key, and how logs tell builds apart.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compiles `bytes` (whose [`sha256_hex`] is `sha256`), or loads the artifact a previous run
/// cached in `dir`. Returns the component and whether it came from the cache.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    dir: Option<&Path>,
) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((Component::from_binary(engine, bytes)?, false));
    };
    let mut engine_hash = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let path = dir.join(format!("{sha256}-{:016x}.cwasm", engine_hash.finish()));
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` below, into the coordinator's
        // own data directory, under a name derived from the source's hash and this engine's
        // settings; wasmtime also checks the artifact's version and settings before use.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok((component, true));
        }
    }
    let component = Component::from_binary(engine, bytes)?;
    std::fs::create_dir_all(dir)?;
    // One temporary file per process: coordinators may share a cache directory.
    let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&temporary, component.serialize()?)?;
    std::fs::rename(&temporary, &path)?;
    Ok((component, false))
}
