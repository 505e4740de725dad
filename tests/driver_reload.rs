//! Hot reload of the microservice driver, against the real binary: the `.wasm` file replaced
//! (renamed into place, or overwritten in place), `SIGHUP` and `POST /api/admin/drivers/reload`
//! while sagas run through the driver; broken files refused while the old driver serves; the
//! coordinator's registration moved to the new driver.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::grpc::GrpcBusi;
use common::webdriver::{chromium, Browser};
use common::{guest_wasm, Busi, Host, Reply};
use dtm_host::drivers::sha256_hex;
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use serde_json::Value;

const RELOADED: &str = r#""message":"microservice driver reloaded""#;
const REFUSED: &str = r#""message":"driver reload refused; the previous driver keeps serving""#;

/// `wasm` with a custom section named `tag` appended: another build of the same driver, with
/// the same behaviour and a different SHA-256.
fn build_of(wasm: &[u8], tag: &str) -> Vec<u8> {
    assert!(tag.len() < 64, "one-byte LEB128 lengths");
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push(1 + tag.len() as u8);
    out.push(tag.len() as u8);
    out.extend_from_slice(tag.as_bytes());
    out
}

/// Replaces `path` the atomic way: a new file renamed over it.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("wasm.tmp");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Overwrites `path` in place, the way `cp` does: truncated, then written in two halves with
/// a pause between, so a watcher may see it half-written.
fn overwrite_in_place(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    file.write_all(first).unwrap();
    file.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    file.write_all(rest).unwrap();
}

/// A host whose driver `name` is loaded from a file of its own (`<dir>/driver.wasm`, a copy of
/// guest crate `crate_name`), which the test may replace.
async fn host_with_driver_file(
    name: &str,
    crate_name: &str,
    extra: &[(&str, &str)],
) -> (Host, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driver.wasm");
    std::fs::copy(guest_wasm(crate_name), &path).unwrap();
    let mut env = vec![
        ("MICRO_SERVICE_DRIVER", name),
        ("MICRO_SERVICE_DRIVER_PATH", path.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    (Host::start_with(&env).await, dir, path)
}

/// The host's log lines that contain every one of `needles`.
fn log_lines(host: &Host, needles: &[&str]) -> Vec<String> {
    host.log()
        .lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Waits until `count` log lines contain every one of `needles` (panics with the log after
/// 60 s: the watcher looks every second, compiling may be slow on a busy machine).
async fn wait_for_log(host: &Host, needles: &[&str], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_lines(host, needles).len() < count {
        assert!(
            Instant::now() < deadline,
            "no {count} log lines with {needles:?}; log:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sighup(host: &Host) {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(host.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// `POST /api/admin/drivers/reload` as the admin UI sends it.
async fn admin_reload(host: &Host) -> (u16, Value) {
    reload_request(host, Some("application/json")).await
}

async fn reload_request(host: &Host, content_type: Option<&str>) -> (u16, Value) {
    let mut request = host.http.post(host.url("/api/admin/drivers/reload"));
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A saga's gid and what its submit answered.
type Outcome = (String, Result<(), tonic::Status>);

/// Sagas of two gRPC branches whose URLs go through the protocol1 driver, submitted one after
/// another by a few clients until stopped; every outcome is kept.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    const CLIENTS: usize = 3;

    async fn start(host: &Host, busi: &GrpcBusi) -> Self {
        let dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
            .await
            .unwrap();
        let (stop, done) = (Arc::<AtomicBool>::default(), Arc::<AtomicUsize>::default());
        let outcomes = Arc::<Mutex<Vec<_>>>::default();
        let clients = (0..Self::CLIENTS)
            .map(|client| {
                let (mut dtm, server) = (dtm.clone(), busi.server.clone());
                let (stop, done, outcomes) =
                    (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&outcomes));
                tokio::spawn(async move {
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let gid = format!("load-{client}-{n}");
                        let url_of = |method: &str| format!("protocol1:///{server}{method}");
                        let saga = common::driver::saga(&gid, url_of);
                        let outcome = dtm.submit(saga).await.map(|_| ());
                        outcomes.lock().unwrap().push((gid, outcome));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self {
            stop,
            done,
            outcomes,
            clients,
        }
    }

    /// Waits until `more` further sagas have finished (so some ran on the driver now in place).
    async fn wait_for_more(&self, more: usize) {
        let target = self.done.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.done.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the sagas stopped progressing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients; checks every saga was acknowledged, succeeded and called its
    /// branches. Returns how many ran.
    async fn stop_and_check(self, host: &Host, busi: &GrpcBusi) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        let outcomes = std::mem::take(&mut *self.outcomes.lock().unwrap());
        for (gid, outcome) in &outcomes {
            assert!(outcome.is_ok(), "{gid}: {outcome:?}\n{}", host.log());
            assert_eq!(host.status(gid).await, "succeed", "{gid}");
        }
        for method in ["/busi.Busi/TransOut", "/busi.Busi/TransIn"] {
            assert_eq!(busi.calls(method).len(), outcomes.len(), "{method}");
        }
        outcomes.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_keep_succeeding_while_the_driver_is_replaced() {
    let (mut host, _dir, path) =
        host_with_driver_file("dtm-driver-protocol1", "protocol1", &[]).await;
    let busi = GrpcBusi::start().await;
    let original = std::fs::read(&path).unwrap();
    let (first, second) = (build_of(&original, "first"), build_of(&original, "second"));
    let load = Load::start(&host, &busi).await;
    load.wait_for_more(5).await;

    // A new build renamed into place is picked up by the watcher.
    replace_atomically(&path, &first);
    let first_sha = format!(r#""sha256":"{}""#, sha256_hex(&first));
    wait_for_log(
        &host,
        &[RELOADED, r#""trigger":"file change""#, &first_sha],
        1,
    )
    .await;
    load.wait_for_more(5).await;

    // SIGHUP loads the file again, even unchanged.
    sighup(&host);
    wait_for_log(&host, &[RELOADED, r#""trigger":"SIGHUP""#, &first_sha], 1).await;
    load.wait_for_more(5).await;

    // Overwritten in place, half-written for a moment: the complete file is what gets loaded.
    let (target, bytes) = (path.clone(), second.clone());
    tokio::task::spawn_blocking(move || overwrite_in_place(&target, &bytes))
        .await
        .unwrap();
    let second_sha = sha256_hex(&second);
    let second_logged = format!(r#""sha256":"{second_sha}""#);
    wait_for_log(
        &host,
        &[RELOADED, r#""trigger":"file change""#, &second_logged],
        1,
    )
    .await;
    load.wait_for_more(5).await;

    // The admin action reports what now serves.
    let (status, body) = admin_reload(&host).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dtm_result"], "SUCCESS");
    assert_eq!(body["driver"], "dtm-driver-protocol1");
    assert_eq!(body["sha256"], second_sha.as_str());
    assert_eq!(body["previous_sha256"], second_sha.as_str());
    assert_eq!(body["schemes"], serde_json::json!(["protocol1"]));
    load.wait_for_more(5).await;

    let sagas = load.stop_and_check(&host, &busi).await;
    assert!(sagas >= 25, "{sagas}");
    assert!(log_lines(&host, &[REFUSED]).is_empty(), "{}", host.log());
    assert!(host.terminate().await.success(), "{}", host.log());
}

/// One saga through protocol1 succeeds.
async fn a_saga_succeeds(host: &Host, busi: &GrpcBusi, gid: &str) {
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let server = &busi.server;
    let saga = common::driver::saga(gid, |method| format!("protocol1:///{server}{method}"));
    let outcome = dtm.submit(saga).await;
    assert!(outcome.is_ok(), "{gid}: {outcome:?}\n{}", host.log());
    assert_eq!(host.status(gid).await, "succeed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_driver_file_is_refused_and_the_old_driver_keeps_serving() {
    let (host, _dir, path) = host_with_driver_file("dtm-driver-protocol1", "protocol1", &[]).await;
    let busi = GrpcBusi::start().await;
    let original = std::fs::read(&path).unwrap();
    let other_driver = std::fs::read(guest_wasm("gozero")).unwrap();
    let broken: [(&str, &[u8], &str); 3] = [
        (
            "garbage",
            b"not a driver at all",
            "not a WebAssembly component",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0",
            "not a WebAssembly component",
        ),
        (
            "another driver",
            &other_driver,
            "is named 'dtm-driver-gozero', but MicroService.Driver is 'dtm-driver-protocol1'",
        ),
    ];
    for (n, (case, bytes, reason)) in broken.into_iter().enumerate() {
        replace_atomically(&path, bytes);
        wait_for_log(&host, &[REFUSED, r#""trigger":"file change""#], n + 1).await;
        let refusal = log_lines(&host, &[REFUSED]).pop().unwrap();
        assert!(refusal.contains(reason), "{case}: {refusal}");
        a_saga_succeeds(&host, &busi, &format!("after-{n}")).await;
    }

    // Asked for explicitly, the file in place is refused again, with the reason.
    let (status, body) = admin_reload(&host).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["dtm_result"], "FAILURE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("is named 'dtm-driver-gozero'"),
        "{body}"
    );

    // The next change of the file is tried again.
    let fixed = build_of(&original, "fixed");
    replace_atomically(&path, &fixed);
    let fixed_sha = format!(r#""sha256":"{}""#, sha256_hex(&fixed));
    wait_for_log(&host, &[RELOADED, &fixed_sha], 1).await;
    a_saga_succeeds(&host, &busi, "after-fix").await;
    assert!(log_lines(&host, &[RELOADED]).len() == 1, "{}", host.log());
}

#[tokio::test]
async fn the_built_in_driver_has_nothing_to_reload() {
    let host = Host::start().await;
    // Requests any web page can make a browser send (no token is set) do not reach the
    // reloader, which would have logged its refusal.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, body) = reload_request(&host, content_type).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert_eq!(body["dtm_result"], "FAILURE");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Content-Type: application/json"),
            "{body}"
        );
    }
    assert!(log_lines(&host, &[REFUSED]).is_empty(), "{}", host.log());

    let (status, body) = admin_reload(&host).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["message"],
        "the built-in default driver has no file to reload"
    );
    sighup(&host);
    wait_for_log(&host, &[REFUSED, r#""trigger":"SIGHUP""#], 1).await;
    assert_eq!(
        host.get("/newGid").await.0,
        200,
        "still serving after SIGHUP"
    );
}

/// The admin UI's Reload button: confirmed, it reloads (the request carries the content type the
/// host requires) and says what now serves.
#[tokio::test]
async fn the_drivers_page_reload_button_reloads() {
    let (host, _dir, path) = host_with_driver_file("dtm-driver-protocol1", "protocol1", &[]).await;
    let Some(chromium) = chromium() else {
        return;
    };
    let sha256 = sha256_hex(&std::fs::read(&path).unwrap());
    let browser = Browser::start(&chromium).await;
    browser.goto(&host.url("/admin/drivers")).await;
    let row = "#drivers tr[data-driver='dtm-driver-protocol1']";
    browser.wait_text(row, &sha256[..12]).await;
    browser.click(&format!("{row} button")).await;
    browser.click("#confirm-ok").await;
    browser
        .wait_text(
            "#toast",
            &format!("Reloaded: dtm-driver-protocol1 {}", &sha256[..12]),
        )
        .await;
    wait_for_log(&host, &[RELOADED, r#""trigger":"admin""#], 1).await;
    browser.quit().await;
}

/// The hostile test driver registers at a fake registry: `POST /register`, `/keepalive`
/// every 200 ms, `/deregister`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_registration_to_the_new_driver() {
    let registry = Busi::start().await;
    let target = format!(
        "hostile://{}/dtmservice",
        registry.base.trim_start_matches("http://")
    );
    let (mut host, _dir, path) = host_with_driver_file(
        "dtm-driver-hostile",
        "hostile",
        &[
            ("MICRO_SERVICE_TARGET", &target),
            ("MICRO_SERVICE_END_POINT", "localhost:36790"),
        ],
    )
    .await;
    assert_eq!(registry.calls("/register").len(), 1);

    // The file is left as it is: the watcher stays out, and a reload loads it anyway.
    let (status, body) = admin_reload(&host).await;
    assert_eq!(status, 200, "{body}\n{}", host.log());
    assert_eq!(body["sha256"], sha256_hex(&std::fs::read(&path).unwrap()));
    let (registered, deregistered) = (registry.calls("/register"), registry.calls("/deregister"));
    assert_eq!(
        (registered.len(), deregistered.len()),
        (2, 1),
        "{}",
        host.log()
    );
    assert!(
        deregistered[0].at < registered[1].at,
        "the old registration goes before the new one is made"
    );
    assert_eq!(registered[1].body, "localhost:36790");
    let renewed = registry.calls("/keepalive").len();
    registry.wait_for("/keepalive", renewed + 2).await;

    // A new driver that cannot register is refused; the old one registers again and stays.
    registry.once("/register", Reply::error());
    let (status, body) = admin_reload(&host).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("could not register the coordinator"),
        "{body}"
    );
    assert_eq!(
        registry.calls("/register").len(),
        4,
        "failed, then again: {:?}\n{}",
        registry.all_calls(),
        host.log()
    );
    assert_eq!(registry.calls("/deregister").len(), 2);
    let renewed = registry.calls("/keepalive").len();
    registry.wait_for("/keepalive", renewed + 2).await;

    assert!(host.terminate().await.success());
    assert_eq!(registry.calls("/deregister").len(), 3, "{}", host.log());
}
