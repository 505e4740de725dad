//! One running server process: its own process group (so a signal reaches the server with
//! all its workers, and the terminal's Ctrl-C does not), its output in a log file, and its pid
//! recorded with the janitor until it has been stopped and waited for.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

use crate::janitor;

pub(crate) struct ServerProcess {
    child: Child,
    /// The signal that shuts the server down quickly and cleanly.
    stop_signal: libc::c_int,
}

impl ServerProcess {
    /// Starts `command` with its output appended to `log`.
    pub(crate) fn spawn(mut command: Command, log: &Path, stop_signal: libc::c_int) -> Self {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", command.get_program()));
        janitor::record(child.id(), signal_name(stop_signal));
        ServerProcess { child, stop_signal }
    }

    /// Whether it is still running (not exited, not killed).
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` to the server's whole process group.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        let group = libc::pid_t::try_from(self.child.id()).unwrap_or(0);
        if group > 0 {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // shared with the callee.
            unsafe {
                libc::kill(-group, signal);
            }
        }
    }

    /// SIGKILL to every process of the server, and waits for the server.
    pub(crate) fn kill(mut self) {
        self.signal(libc::SIGKILL);
        self.reap();
    }

    /// Shuts the server down with its stop signal (to the server alone: it stops its own
    /// workers), killing its group after `grace`.
    pub(crate) fn stop(mut self, grace: Duration) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(0);
        // SAFETY: as in `signal`, for one process.
        unsafe {
            libc::kill(pid, self.stop_signal);
        }
        let deadline = Instant::now() + grace;
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
        self.reap();
    }

    fn reap(&mut self) {
        let _ = self.child.wait();
        janitor::forget(self.child.id());
    }
}

/// The name `kill -<name>` takes, for the janitor.
fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGQUIT => "QUIT",
        libc::SIGINT => "INT",
        libc::SIGKILL => "KILL",
        _ => "TERM",
    }
}
