//! Where a test process keeps its servers' data, and the janitor that cleans up after it.
//!
//! Every server of a process lives in one directory (in memory, under `/dev/shm`, where there
//! is one: the data is thrown away anyway). Each running server is recorded there by its pid,
//! with the signal that stops it. The janitor, a small shell process started with the first
//! server, waits for the test process to end, however it ends, then stops what is still
//! recorded and removes the directory: the servers shared by a whole test process are never
//! dropped, and a test process that is killed drops nothing.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Ignores the terminal's signals (Ctrl-C reaches the whole process group), polls the owner,
/// then stops each recorded server with its signal, gives them 5 s, kills what is left and
/// removes the directory.
const JANITOR: &str = r#"
trap '' INT HUP TERM QUIT
owner=$1 root=$2
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
for f in "$root"/pids/*; do [ -f "$f" ] && kill -"$(cat "$f")" "${f##*/}" 2>/dev/null; done
for _ in 1 2 3 4 5 6 7 8 9 10; do
  alive=
  for f in "$root"/pids/*; do [ -f "$f" ] && kill -0 "${f##*/}" 2>/dev/null && alive=1; done
  [ -z "$alive" ] && break
  sleep 0.5
done
for f in "$root"/pids/*; do [ -f "$f" ] && kill -KILL "${f##*/}" 2>/dev/null; done
rm -rf "$root"
"#;

/// This process's directory for server data, made (with its janitor) on first use.
#[expect(
    clippy::zombie_processes,
    reason = "the janitor outlives this process by design; it ends only after this one has"
)]
pub(crate) fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = ["/dev/shm"]
            .map(PathBuf::from)
            .into_iter()
            .find(|dir| dir.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let root = base.join(format!("dtm-test-servers-{}", std::process::id()));
        // Left by an earlier process with this pid whose janitor did not get to it.
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("pids"))
            .unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
        Command::new("sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("janitor")
            .arg(std::process::id().to_string())
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the test servers' janitor (sh)");
        root
    })
}

/// Records a running server, to be stopped with `signal` if this process ends first.
pub(crate) fn record(pid: u32, signal: &str) {
    let _ = std::fs::write(root().join("pids").join(pid.to_string()), signal);
}

/// Forgets a server that has been stopped and waited for.
pub(crate) fn forget(pid: u32) {
    let _ = std::fs::remove_file(root().join("pids").join(pid.to_string()));
}
