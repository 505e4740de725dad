//! A real etcd-server (the Debian package's `/usr/bin/etcd`, 3.4) per test, and a small client
//! of its v3 JSON gateway for the test side.
//!
//! ```text
//! let Some(mut etcd) = Etcd::start().await else { return }; // None: not installed (skip)
//! etcd.address()                           // "127.0.0.1:<client port>", for targets and URLs
//! etcd.grant(10).await -> lease ID         // decimal string, as etcd sends it
//! etcd.put(key, value, Some(&lease)).await // or None for a permanent key
//! etcd.keep_alive(&lease).await            // renews once
//! etcd.revoke(&lease).await                // deletes the lease's keys
//! etcd.delete(key).await
//! etcd.get_prefix(prefix).await -> Vec<(key, value)>, sorted by key
//! etcd.wait_prefix(prefix, secs, |kvs| ...).await -> the kvs that satisfied the check
//! etcd.call("lease/timetolive", json).await // any other gateway call, its answer as JSON
//! etcd.enable_auth(password).await         // user `root`; the helpers then send its token
//! etcd.stop().await / etcd.start_again().await  // down and back, same ports and data
//! etcd.log()                               // etcd's output, for failure messages
//! ```
//!
//! The process is killed when the value is dropped. Every helper panics on failure: they are
//! the test's own setup, not what is being tested.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use test_servers::Program;

use super::free_port;

pub struct Etcd {
    program: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    http: reqwest::Client,
    token: Option<String>,
}

/// The key after every key that starts with `prefix` (etcd's prefix `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A temp dir in memory when there is one: etcd syncs its log on every write, and on a busy
/// shared disk that can outlast the coordinator's 3 s request timeout.
fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("etcd")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

fn text(field: &Value) -> String {
    let bytes = BASE64.decode(field.as_str().unwrap_or_default()).unwrap();
    String::from_utf8(bytes).unwrap()
}

impl Etcd {
    /// Starts a single-member cluster on free ports and waits until it serves; `None` when etcd
    /// is not installed (the test is skipped: see `test_servers::Program::require`).
    pub async fn start() -> Option<Self> {
        let mut etcd = Etcd {
            program: Program::ETCD.require()?,
            client_port: free_port(),
            peer_port: free_port(),
            dir: data_dir(),
            child: None,
            http: reqwest::Client::new(),
            token: None,
        };
        etcd.spawn().await;
        Some(etcd)
    }

    /// `127.0.0.1:<client port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let client = format!("http://{}", self.address());
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let child = Command::new(&self.program)
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            // A single member elects itself after one election timeout: keep it short.
            .args(["--heartbeat-interval=50", "--election-timeout=500"])
            .env_remove("ETCDCTL_API")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // A range read needs a leader, so success means etcd really serves.
            let ready = self
                .http
                .post(format!("{client}/v3/kv/range"))
                .body(json!({"key": BASE64.encode("ready")}).to_string())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not serve in 20 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills etcd (SIGKILL: the registry is simply gone) and waits until its port is free.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("etcd is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts etcd again on the same ports with the same data, and waits until it serves.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        self.spawn().await;
    }

    /// One gateway call; panics with etcd's answer unless it is a 200.
    pub async fn call(&self, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .post(format!("http://{}/v3/{path}", self.address()))
            .body(body.to_string());
        if let Some(token) = &self.token {
            request = request.header("authorization", token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "etcd /v3/{path}: {status} {text}");
        // Streamed calls (keep-alive) end their message with a newline.
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .next()
            .unwrap()
            .unwrap()
    }

    /// Grants a lease of `ttl_secs`; returns its ID.
    pub async fn grant(&self, ttl_secs: u64) -> String {
        let answer = self.call("lease/grant", json!({"TTL": ttl_secs})).await;
        answer["ID"].as_str().unwrap().to_owned()
    }

    /// Renews `lease` once; false when etcd no longer knows it.
    pub async fn keep_alive(&self, lease: &str) -> bool {
        let answer = self.call("lease/keepalive", json!({"ID": lease})).await;
        answer["result"]["TTL"]
            .as_str()
            .is_some_and(|ttl| ttl != "0")
    }

    pub async fn revoke(&self, lease: &str) {
        self.call("lease/revoke", json!({"ID": lease})).await;
    }

    pub async fn put(&self, key: &str, value: &str, lease: Option<&str>) {
        let mut body = json!({"key": BASE64.encode(key), "value": BASE64.encode(value)});
        if let Some(lease) = lease {
            body["lease"] = lease.into();
        }
        self.call("kv/put", body).await;
    }

    pub async fn delete(&self, key: &str) {
        self.call("kv/deleterange", json!({"key": BASE64.encode(key)}))
            .await;
    }

    /// Every key starting with `prefix`, with its value, sorted by key.
    pub async fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let body = json!({
            "key": BASE64.encode(prefix),
            "range_end": BASE64.encode(prefix_end(prefix.as_bytes())),
        });
        let answer = self.call("kv/range", body).await;
        let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
        kvs.iter()
            .map(|kv| (text(&kv["key"]), text(&kv["value"])))
            .collect()
    }

    /// Polls `prefix` until `done` holds for its keys; panics with them and etcd's log after
    /// `secs`.
    pub async fn wait_prefix(
        &self,
        prefix: &str,
        secs: u64,
        done: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let kvs = self.get_prefix(prefix).await;
            if done(&kvs) {
                return kvs;
            }
            assert!(
                Instant::now() < deadline,
                "keys under '{prefix}' did not reach the expected state in {secs} s: {kvs:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Turns authentication on with user `root` (role `root`) and `password`; the helpers here
    /// then authenticate their calls.
    pub async fn enable_auth(&mut self, password: &str) {
        self.call(
            "auth/user/add",
            json!({"name": "root", "password": password}),
        )
        .await;
        self.call("auth/role/add", json!({"name": "root"})).await;
        self.call("auth/user/grant", json!({"user": "root", "role": "root"}))
            .await;
        self.call("auth/enable", json!({})).await;
        let answer = self
            .call(
                "auth/authenticate",
                json!({"name": "root", "password": password}),
            )
            .await;
        self.token = Some(answer["token"].as_str().unwrap().to_owned());
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
