//! The admin UI (docs/engine.md §8) in a real headless Chromium, driven over WebDriver, against the
//! real binary: the list, a transaction's branches, force stop, topics, drivers, and the admin
//! token. The browser tests are skipped, with a message, only where Chromium is not installed.
//! Screenshots of the pages land in `target/admin-ui-screenshots/`.

mod common;

use common::webdriver::{chromium, Browser};
use common::{transfer, Busi, Host, Reply};
use serde_json::{json, Value};

const TOKEN: &str = "correct-horse-battery";

fn row(gid: &str) -> String {
    format!("#tx-table tr[data-gid='{gid}']")
}

/// Submits a transfer saga that succeeds (with `wait_result`) and one that stays `submitted`
/// because its second action keeps failing with an error; returns their gids.
async fn done_and_stuck_sagas(host: &Host, busi: &Busi) -> (String, String) {
    let done = host.new_gid().await;
    let mut body = transfer(&done, busi);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 200);
    assert_eq!(host.status(&done).await, "succeed");
    busi.always("/TransIn", Reply::error());
    let stuck = host.new_gid().await;
    assert_eq!(host.post("/submit", transfer(&stuck, busi)).await.0, 200);
    busi.wait_for("/TransIn", 2).await;
    assert_eq!(host.status(&stuck).await, "submitted");
    (done, stuck)
}

#[tokio::test]
async fn serves_the_ui_under_its_base_path() {
    let host = Host::start_with(&[("ADMIN_BASE_PATH", "/ops/dtm/")]).await;
    for page in [
        "/ops/dtm",
        "/ops/dtm/",
        "/ops/dtm/admin/global-transactions/all",
        "/ops/dtm/admin/global-transactions/detail/some-gid",
    ] {
        let r = host.http.get(host.url(page)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'"));
        let html = r.text().await.unwrap();
        assert!(
            html.contains(r#"<script defer src="/ops/dtm/assets/app.js"#),
            "{html}"
        );
        assert!(
            html.contains(r#"name="dtm-base-path" content="/ops/dtm""#),
            "{html}"
        );
    }
    for (asset, content_type) in [
        ("/ops/dtm/assets/app.js", "text/javascript; charset=utf-8"),
        ("/ops/dtm/assets/app.css", "text/css; charset=utf-8"),
        ("/ops/dtm/favicon.ico", "image/svg+xml"),
    ] {
        let r = host.http.get(host.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(r.headers()["content-type"], content_type, "{asset}");
    }
    for missing in [
        "/",
        "/admin/global-transactions/all",
        "/ops/dtm/assets/nope.js",
    ] {
        let r = host.http.get(host.url(missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    // Without a token the admin-only JSON is open, like the UI.
    let r = host.http.get(host.url("/api/admin/drivers")).send().await;
    let drivers: Value = r.unwrap().json().await.unwrap();
    assert_eq!(
        drivers["drivers"],
        json!([{"name": "default", "path": "", "sha256": null, "schemes": [], "rewrites_http": false,
                "rewrites_grpc": false, "target": "", "state": "active"}])
    );
}

#[tokio::test]
async fn a_bad_base_path_stops_the_start() {
    // `/api/ping`: the admin pages' routes would clash with the host's own.
    for base_path in ["/a b", "/api/ping"] {
        let (status, log) = common::run_to_exit(&[("ADMIN_BASE_PATH", base_path)], &[]);
        assert!(!status.success(), "{base_path}");
        assert!(
            log.contains("config key AdminBasePath"),
            "{base_path}: {log}"
        );
        assert!(!log.contains("panicked"), "{base_path}: {log}");
    }
}

#[tokio::test]
async fn lists_transactions_shows_branches_and_force_stops() {
    let host = Host::start_with(&[("ADMIN_BASE_PATH", "/ops/dtm")]).await;
    let busi = Busi::start().await;
    let (done, stuck) = done_and_stuck_sagas(&host, &busi).await;
    let (status, _) = host
        .get("/subscribe?topic=orders&url=http://127.0.0.1:9/notify&remark=billing")
        .await;
    assert_eq!(status, 200);
    let Some(chromium) = chromium() else {
        return;
    };
    let browser = Browser::start(&chromium).await;

    // The list: both sagas, with their statuses.
    browser.goto(&host.url("/ops/dtm/")).await;
    browser
        .wait_text(&format!("{} td.status", row(&done)), "succeed")
        .await;
    browser
        .wait_text(&format!("{} td.status", row(&stuck)), "submitted")
        .await;
    browser.screenshot("transactions.png").await;

    // The status filter keeps only the succeeded one.
    browser.click("#status option[value='succeed']").await;
    browser.click("#filter-apply").await;
    browser.wait_gone(&row(&stuck)).await;
    browser.wait_for(&row(&done)).await;

    // A create-time range (dtm's createTimeStart/End) from 2099 on shows nothing; one up to 2099
    // shows both.
    let list = host.url("/ops/dtm/admin/global-transactions/all");
    browser
        .goto(&format!("{list}?createdFrom=2099-01-01T00:00"))
        .await;
    browser.wait_text("#results", "No transactions.").await;
    browser
        .goto(&format!("{list}?createdTo=2099-01-01T00:00"))
        .await;
    browser.wait_for(&row(&done)).await;
    browser.wait_for(&row(&stuck)).await;

    // Unfinished: only the stuck one.
    browser
        .click("#nav a[data-link='/admin/global-transactions/unfinished']")
        .await;
    browser.wait_for(&row(&stuck)).await;
    browser.wait_gone(&row(&done)).await;

    // Its detail: four branch records; the first step succeeded, the second is still trying.
    browser.click(&format!("{} a", row(&stuck))).await;
    browser.wait_text("#detail-status", "submitted").await;
    let step = |id: &str| format!("#branches tr[data-branch='{id}']");
    browser
        .wait_text(&format!("{} td.status", step("01/action")), "succeed")
        .await;
    browser
        .wait_text(&format!("{} td.status", step("02/action")), "prepared")
        .await;
    browser
        .wait_text(&format!("{} td.url", step("02/action")), "/TransIn")
        .await;
    browser
        .wait_text(
            &format!("{} td.url", step("02/compensate")),
            "/TransInRevert",
        )
        .await;
    browser
        .wait_text(
            &format!("{} td.payload", step("01/action")),
            r#""amount":30"#,
        )
        .await;
    browser.screenshot("detail.png").await;

    // Force stop, confirmed in the dialog: failed in the store, without compensation.
    browser.click("#force-stop").await;
    browser.click("#confirm-ok").await;
    browser.wait_text("#detail-status", "failed").await;
    assert_eq!(host.status(&stuck).await, "failed");
    assert!(busi.calls("/TransOutRevert").is_empty());
    assert!(browser.find("#force-stop:disabled").await.is_some());

    // Topics and their subscribers.
    browser.click("#nav a[data-link='/admin/kv/topics']").await;
    let topic = "#topics tr[data-topic='orders']";
    browser.wait_text(topic, "orders").await;
    browser.click(&format!("{topic} button")).await;
    browser
        .wait_text("#topics tr.sub-row", "http://127.0.0.1:9/notify")
        .await;
    browser.wait_text("#topics tr.sub-row", "billing").await;
    browser.screenshot("topics.png").await;

    // The driver in use.
    browser.click("#nav a[data-link='/admin/drivers']").await;
    let driver = browser
        .wait_text("#drivers tr[data-driver='default']", "active")
        .await;
    assert!(driver.contains("built in"), "{driver}");
    browser.quit().await;
}

#[tokio::test]
async fn admin_token_guards_the_ui_but_not_dtms_api() {
    let host = Host::start_with(&[("ADMIN_TOKEN", TOKEN)]).await;
    let busi = Busi::start().await;
    let drivers = host.url("/api/admin/drivers");
    let answer = |auth: Option<&str>| {
        let mut request = host.http.get(&drivers);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = answer(None).await;
    assert_eq!(status, 401);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("admin token required"));
    assert_eq!(answer(Some("Bearer wrong")).await.0, 401);
    assert_eq!(answer(Some(TOKEN)).await.0, 401, "no scheme");
    let (status, body) = answer(Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(
        (status, body["drivers"][0]["name"].as_str()),
        (200, Some("default"))
    );
    let reload = host
        .http
        .post(host.url("/api/admin/drivers/reload"))
        .header("Content-Type", "application/json");
    assert_eq!(
        reload.send().await.unwrap().status(),
        401,
        "reload needs the token too"
    );

    // dtm's API answers its SDKs without any token.
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 200);
    assert_eq!(host.status(&gid).await, "succeed");

    let Some(chromium) = chromium() else {
        return;
    };
    let browser = Browser::start(&chromium).await;
    browser.goto(&host.url("/")).await;
    browser.wait_for("#login:not([hidden])").await;
    let shown =
        "return [!document.querySelector('#login').hidden, !document.querySelector('#nav').hidden]";
    assert_eq!(browser.script(shown).await, json!([true, false]));
    assert!(browser.find("#tx-table").await.is_none());

    browser.type_into("#login-token", "wrong").await;
    browser.click("#login-submit").await;
    browser
        .wait_text("#login-error", "not this coordinator's admin token")
        .await;
    assert!(browser.find("#tx-table").await.is_none());
    browser.screenshot("login.png").await;

    browser.type_into("#login-token", TOKEN).await;
    browser.click("#login-submit").await;
    browser
        .wait_text(&format!("{} td.status", row(&gid)), "succeed")
        .await;
    assert_eq!(browser.script(shown).await, json!([false, true]));

    // The token stays for the browser tab: a reload needs no new sign-in.
    browser
        .goto(&host.url("/admin/global-transactions/all"))
        .await;
    browser.wait_for(&row(&gid)).await;
    let stored = "return sessionStorage.getItem('dtm-admin-token')";
    assert_eq!(browser.script(stored).await, json!(TOKEN));

    browser.click("#logout").await;
    browser.wait_for("#login:not([hidden])").await;
    assert_eq!(browser.script(shown).await, json!([true, false]));
    assert_eq!(browser.script(stored).await, Value::Null);
    browser.quit().await;
}

#[tokio::test]
async fn pages_through_transactions_and_resets_cron_time() {
    let host = Host::start().await;
    let busi = Busi::start().await;
    let mut prepared = Vec::new();
    for _ in 0..11 {
        let gid = host.new_gid().await;
        let (status, body) = host
            .post("/prepare", json!({"gid": gid, "trans_type": "tcc"}))
            .await;
        assert_eq!(status, 200, "{body}");
        prepared.push(gid);
    }
    busi.always("/Fail", Reply::error());
    let stuck = host.new_gid().await;
    let body = common::saga(&stuck, &busi, &[("/Fail", "/FailRevert")]);
    assert_eq!(host.post("/submit", body).await.0, 200);
    let Some(chromium) = chromium() else {
        return;
    };
    let browser = Browser::start(&chromium).await;
    let rows = "return Array.from(document.querySelectorAll('#tx-table tr[data-gid]'), \
                r => r.querySelector('td.status').innerText)";

    // Unfinished, 10 a page: the prepared ones first, then the submitted one.
    browser
        .goto(&host.url("/admin/global-transactions/unfinished"))
        .await;
    browser.wait_text("#page-number", "Page 1").await;
    browser.wait_for(&row(&prepared[10])).await;
    assert_eq!(browser.script(rows).await, json!(vec!["prepared"; 10]));
    browser.click("#page-next").await;
    browser.wait_text("#page-number", "Page 2").await;
    assert_eq!(browser.script(rows).await, json!(["prepared", "submitted"]));
    assert!(browser.find(&row(&stuck)).await.is_some());
    assert!(browser.find("#page-next:disabled").await.is_some());
    browser.click("#page-previous").await;
    browser.wait_text("#page-number", "Page 1").await;
    assert_eq!(browser.script(rows).await, json!(vec!["prepared"; 10]));

    // All transactions: the same twelve, newest first.
    browser
        .click("#nav a[data-link='/admin/global-transactions/all']")
        .await;
    browser.wait_for(&row(&stuck)).await;
    browser.click("#page-next").await;
    browser.wait_text("#page-number", "Page 2").await;
    assert_eq!(browser.script(rows).await, json!(["prepared", "prepared"]));

    // Reset next cron time, confirmed: the stored time moves.
    let gid = &prepared[0];
    let before = host.query(gid).await["transaction"]["next_cron_time"].clone();
    browser.click(&format!("{} a", row(gid))).await;
    browser.wait_text("#detail-status", "prepared").await;
    browser.click("#reset-cron").await;
    browser.click("#confirm-ok").await;
    browser.wait_text("#toast", "Next cron time reset").await;
    let after = host.query(gid).await["transaction"]["next_cron_time"].clone();
    assert_ne!(before, after);
    browser.quit().await;
}
