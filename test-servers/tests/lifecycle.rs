//! The throwaway servers themselves: each kind serves on its port, comes back on the same port
//! after a kill, keeps what it acknowledged (Redis, append-only), freezes and thaws; a missing
//! program skips a test, or fails it under CI.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use test_servers::{Kind, Program, Server};

/// One RESP exchange with the Redis on `port`; `None` when nothing answers within 1 s.
fn redis(port: u16, args: &[&str]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = [0u8; 256];
    let n = stream.read(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer[..n]).into_owned())
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn redis_comes_back_on_its_port_with_what_it_acknowledged() {
    let Some(mut server) = Server::start(Kind::Redis) else {
        return;
    };
    let port = server.port();
    assert_eq!(redis(port, &["SET", "k", "v"]).as_deref(), Some("+OK\r\n"));
    server.kill();
    assert!(!server.is_running());
    assert!(!accepts(port), "still listening after the kill");
    server.start_again();
    assert_eq!(server.port(), port);
    assert_eq!(redis(port, &["GET", "k"]).as_deref(), Some("$1\r\nv\r\n"));
    server.pause();
    assert_eq!(redis(port, &["PING"]), None, "a paused server answered");
    server.resume();
    assert_eq!(redis(port, &["PING"]).as_deref(), Some("+PONG\r\n"));
}

fn restarts_on_its_port(kind: Kind) {
    let Some(mut server) = Server::start(kind) else {
        return;
    };
    let port = server.port();
    assert!(accepts(port));
    server.kill();
    assert!(!accepts(port), "still listening after the kill");
    server.start_again();
    assert!(server.is_running());
    assert!(accepts(port), "{}", server.log());
}

#[test]
fn postgres_restarts_on_its_port() {
    restarts_on_its_port(Kind::Postgres);
}

#[test]
fn mariadb_restarts_on_its_port() {
    restarts_on_its_port(Kind::MariaDb);
}

#[test]
fn a_dropped_server_is_gone_with_its_directory() {
    let Some(server) = Server::start(Kind::Redis) else {
        return;
    };
    let port = server.port();
    drop(server);
    assert!(!accepts(port));
}

#[test]
fn the_shared_server_is_one_per_process() {
    let (Some(a), Some(b)) = (Server::shared(Kind::Redis), Server::shared(Kind::Redis)) else {
        return;
    };
    assert_eq!(a.port(), b.port());
    assert_eq!(redis(a.port(), &["PING"]).as_deref(), Some("+PONG\r\n"));
}

const NOT_INSTALLED: Program = Program::new("dtm-no-such-server", "dtm-no-such-package");

/// Run only by [`a_missing_program_skips_the_test_or_fails_it_under_ci`], in a child process.
#[test]
fn probe_a_missing_program() {
    if std::env::var_os("TEST_SERVERS_PROBE").is_some() {
        assert_eq!(NOT_INSTALLED.require(), None);
    }
}

#[test]
fn a_missing_program_skips_the_test_or_fails_it_under_ci() {
    let probe = |ci: Option<&str>| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "probe_a_missing_program", "--test-threads=1"])
            .env("TEST_SERVERS_PROBE", "1")
            .env_remove("CI");
        if let Some(ci) = ci {
            command.env("CI", ci);
        }
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (passed, text) = probe(None);
    assert!(passed, "{text}");
    assert!(
        text.contains("skipped: probe_a_missing_program: `dtm-no-such-server` is not installed (Debian package `dtm-no-such-package`"),
        "{text}"
    );
    let (passed, text) = probe(Some("true"));
    assert!(!passed, "{text}");
    assert!(
        text.contains("apt-get install dtm-no-such-package); CI installs it in .ci/run"),
        "{text}"
    );
}
