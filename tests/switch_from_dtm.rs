//! Switching from dtm to dtm-host without draining. dtm v1.19.0 itself (`tests/common/dtm.rs`)
//! runs on its own tables, made by its own SQL files, in a fresh MariaDB database or PostgreSQL
//! schema. It is given transactions of every kind while the business service fails some of
//! their calls. Once its cron has claimed and tried them (their rows carry its `owner`,
//! `next_cron_time` and backed-off `next_cron_interval`), except two prepared ones it is not to
//! look at yet, it is killed with SIGKILL, every one unfinished. Then the business service
//! recovers, and dtm-host, started on the same tables, must finish each one as dtm would have:
//! the final status and branch records in its query API, each call dtm still owed made exactly
//! once (the same request dtm sent), and nothing else.
//!
//! Without Go or the server programs the tests are skipped (under `CI=true` they fail naming the
//! package to install).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::dtm::{dtm_store_yaml, Dtm};
use common::stores::{Backend, StoreScope};
use common::{saga, Busi, Host, Reply};
use serde_json::{json, Value};

/// dtm looks for due transactions every second (its default is 3 s). Its server-wide
/// `RetryInterval` cannot be under 10 s, so the transactions set a short `retry_interval` of
/// their own where dtm is to retry them before it is killed.
const DTM_YAML: &str = "TransCronInterval: 1\n";

/// The prepared transactions dtm must not look at before it is killed time out after this many
/// seconds: dtm's first look comes one RetryInterval (10 s) after creation, finds them not timed
/// out yet, and the next comes 10 s later, far after the kill.
const UNTOUCHED_TIMEOUT: u64 = 12;

/// The calls that fail until the switch: each answers an error or ONGOING, which dtm retries.
fn failing_until_switch() -> Vec<(&'static str, Reply)> {
    vec![
        ("/RetriedIn", Reply::error()),
        ("/CompOutRevert", Reply::error()),
        ("/MsgIn", Reply::ongoing()),
        ("/CheckedQuery", Reply::ongoing()),
        ("/AbortingCancelB", Reply::error()),
    ]
}

/// One transaction left unfinished by dtm.
struct Case {
    gid: String,
    /// The failing path that dtm's cron has called before the kill, and how many calls of it
    /// that makes at least (with the one at submit): dtm claimed and ran the transaction.
    /// `None`: dtm never looked at it, and must not have called any of its paths.
    tried: Option<(&'static str, usize)>,
    /// dtm's record once it has tried: status and branch statuses, in record order.
    left: (&'static str, &'static [&'static str]),
    /// dtm-host's record at the end.
    finished: (&'static str, &'static [&'static str]),
    /// Every path of the transaction, with how many times dtm-host calls it.
    calls: &'static [(&'static str, usize)],
}

/// Starts each transaction on dtm; returns what dtm and dtm-host are to make of them.
async fn start_transactions(dtm: &Dtm, busi: &Busi, tag: &str) -> Vec<Case> {
    let gid = |name: &str| format!("switch-{tag}-{name}");
    let submit = |body: Value| async move {
        let (status, answer) = dtm.post("/submit", body).await;
        assert_eq!(status, 200, "{answer}");
    };
    let prepare = |body: Value| async move {
        let (status, answer) = dtm.post("/prepare", body).await;
        assert_eq!(status, 200, "{answer}");
    };
    let tcc = |gid: String, options: Value, prefix: &'static str| async move {
        prepare(with(json!({"gid": gid, "trans_type": "tcc"}), options)).await;
        for (id, letter) in [("01", "A"), ("02", "B")] {
            let branch = json!({
                "gid": gid, "trans_type": "tcc", "branch_id": id,
                "data": format!(r#"{{"amount":{id}}}"#),
                "confirm": busi.url(&format!("/{prefix}Confirm{letter}")),
                "cancel": busi.url(&format!("/{prefix}Cancel{letter}")),
            });
            let (status, answer) = dtm.post("/registerBranch", branch).await;
            assert_eq!(status, 200, "{answer}");
        }
    };
    let msg = |gid: &str, name: &str, options: Value| {
        let body = json!({
            "gid": gid, "trans_type": "msg",
            "steps": [{"action": busi.url(&format!("/{name}In"))}],
            "payloads": [r#"{"amount":30}"#],
            "query_prepared": busi.url(&format!("/{name}Query")),
        });
        with(body, options)
    };
    let retried = || json!({"retry_interval": 1});

    let mut cases = Vec::new();

    // A saga whose second action fails until the switch: dtm-host runs that action once more.
    let g = gid("saga-retried");
    let steps = [
        ("/RetriedOut", "/RetriedOutRevert"),
        ("/RetriedIn", "/RetriedInRevert"),
    ];
    submit(with(saga(&g, busi, &steps), retried())).await;
    cases.push(Case {
        gid: g,
        tried: Some(("/RetriedIn", 2)),
        left: (
            "submitted",
            &["prepared", "succeed", "prepared", "prepared"],
        ),
        finished: ("succeed", &["prepared", "succeed", "prepared", "succeed"]),
        calls: &[
            ("/RetriedOut", 0),
            ("/RetriedOutRevert", 0),
            ("/RetriedIn", 1),
            ("/RetriedInRevert", 0),
        ],
    });

    // A saga rolled back by a FAILURE whose first compensation fails until the switch: dtm
    // compensated the second step, dtm-host compensates the first.
    busi.always("/CompIn", Reply::failure("insufficient balance"));
    let g = gid("saga-compensated");
    let steps = [("/CompOut", "/CompOutRevert"), ("/CompIn", "/CompInRevert")];
    submit(with(saga(&g, busi, &steps), retried())).await;
    cases.push(Case {
        gid: g,
        tried: Some(("/CompOutRevert", 2)),
        left: ("aborting", &["prepared", "succeed", "succeed", "failed"]),
        finished: ("failed", &["succeed", "succeed", "succeed", "failed"]),
        calls: &[
            ("/CompOut", 0),
            ("/CompOutRevert", 1),
            ("/CompIn", 0),
            ("/CompInRevert", 0),
        ],
    });

    // A submitted msg whose second action answers ONGOING until the switch.
    let g = gid("msg-submitted");
    let body = json!({
        "gid": g, "trans_type": "msg",
        "steps": [{"action": busi.url("/MsgOut")}, {"action": busi.url("/MsgIn")}],
        "payloads": [r#"{"amount":30}"#, r#"{"amount":31}"#],
    });
    submit(with(body, retried())).await;
    cases.push(Case {
        gid: g,
        tried: Some(("/MsgIn", 2)),
        left: ("submitted", &["succeed", "prepared"]),
        finished: ("succeed", &["succeed", "succeed"]),
        calls: &[("/MsgOut", 0), ("/MsgIn", 1)],
    });

    // A prepared msg, timed out at once, whose check-back answers ONGOING until the switch.
    let g = gid("msg-checked");
    let options = json!({"timeout_to_fail": 1, "retry_interval": 1});
    prepare(msg(&g, "Checked", options)).await;
    cases.push(Case {
        gid: g,
        tried: Some(("/CheckedQuery", 1)),
        left: ("prepared", &["prepared"]),
        finished: ("succeed", &["succeed"]),
        calls: &[("/CheckedQuery", 1), ("/CheckedIn", 1)],
    });

    // A prepared msg dtm never checks back: dtm-host does once it times out.
    let g = gid("msg-unchecked");
    let body = msg(
        &g,
        "Unchecked",
        json!({"timeout_to_fail": UNTOUCHED_TIMEOUT}),
    );
    prepare(body).await;
    cases.push(Case {
        gid: g,
        tried: None,
        left: ("prepared", &["prepared"]),
        finished: ("succeed", &["succeed"]),
        calls: &[("/UncheckedQuery", 1), ("/UncheckedIn", 1)],
    });

    // A TCC never submitted that dtm aborted at its timeout; the cancel of its last branch fails
    // until the switch, so dtm never reached the first one.
    let options = json!({"timeout_to_fail": 1, "retry_interval": 1});
    tcc(gid("tcc-aborting"), options, "Aborting").await;
    cases.push(Case {
        gid: gid("tcc-aborting"),
        tried: Some(("/AbortingCancelB", 1)),
        left: (
            "aborting",
            &["prepared", "prepared", "prepared", "prepared"],
        ),
        finished: ("failed", &["succeed", "prepared", "succeed", "prepared"]),
        calls: &[
            ("/AbortingConfirmA", 0),
            ("/AbortingCancelA", 1),
            ("/AbortingConfirmB", 0),
            ("/AbortingCancelB", 1),
        ],
    });

    // A TCC left prepared (branches registered, never submitted): dtm-host cancels it at its
    // timeout.
    let options = json!({"timeout_to_fail": UNTOUCHED_TIMEOUT});
    tcc(gid("tcc-prepared"), options, "Prepared").await;
    cases.push(Case {
        gid: gid("tcc-prepared"),
        tried: None,
        left: (
            "prepared",
            &["prepared", "prepared", "prepared", "prepared"],
        ),
        finished: ("failed", &["succeed", "prepared", "succeed", "prepared"]),
        calls: &[
            ("/PreparedConfirmA", 0),
            ("/PreparedCancelA", 1),
            ("/PreparedConfirmB", 0),
            ("/PreparedCancelB", 1),
        ],
    });
    cases
}

/// `body` with the keys of `extra` added.
fn with(mut body: Value, extra: Value) -> Value {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// A query's transaction status and branch statuses.
fn statuses(query: &Value) -> (String, Vec<String>) {
    let status = query["transaction"]["status"].as_str().unwrap_or("");
    let branches = query["branches"].as_array().map_or(Vec::new(), |bs| {
        bs.iter()
            .map(|b| b["status"].as_str().unwrap_or("").to_owned())
            .collect()
    });
    (status.to_owned(), branches)
}

/// Waits until dtm's record of `case` is as dtm leaves it while its calls fail and, for one
/// dtm is to try, until dtm's cron has claimed it (its `owner` is dtm's) and made the call;
/// returns that record.
async fn wait_until_tried(dtm: &Dtm, busi: &Busi, case: &Case) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = dtm.query(&case.gid).await;
        let owner = q["transaction"]["owner"].as_str().unwrap_or("");
        let tried = case
            .tried
            .is_none_or(|(path, calls)| !owner.is_empty() && busi.calls(path).len() >= calls);
        let (status, branches) = statuses(&q);
        if status == case.left.0 && branches == case.left.1 && tried {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "dtm did not leave {} as expected: {q}\ndtm's log:\n{}",
            case.gid,
            dtm.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn switch_from_dtm(backend: Backend) {
    let Some(scope) = StoreScope::new(backend, "switch") else {
        return;
    };
    let Some(store_yaml) = dtm_store_yaml(&scope, 10).await else {
        return;
    };
    let Some(mut dtm) = Dtm::start(&format!("{store_yaml}{DTM_YAML}")).await else {
        return;
    };
    let busi = Busi::start().await;
    for (path, reply) in failing_until_switch() {
        busi.always(path, reply);
    }
    let cases = start_transactions(&dtm, &busi, backend.name()).await;
    let mut left_by_dtm = Vec::new();
    for case in &cases {
        left_by_dtm.push(wait_until_tried(&dtm, &busi, case).await);
    }
    dtm.kill9();

    // Once dtm is gone no call of its can arrive: what was called so far was called by dtm.
    let called_by_dtm: HashMap<&str, usize> = cases
        .iter()
        .flat_map(|case| case.calls)
        .map(|&(path, _)| (path, busi.calls(path).len()))
        .collect();
    for case in cases.iter().filter(|case| case.tried.is_none()) {
        for &(path, _) in case.calls {
            assert_eq!(called_by_dtm[path], 0, "dtm called {path} of {}", case.gid);
        }
    }
    for (path, _) in failing_until_switch() {
        busi.always(path, Reply::ok());
    }

    let started = Instant::now();
    let host = scope.start_host().await;
    for (case, left) in cases.iter().zip(&left_by_dtm) {
        let q = host.wait_status(&case.gid, case.finished.0, 60).await;
        assert_eq!(statuses(&q).1, case.finished.1, "{q}");
        let reason = &left["transaction"]["rollback_reason"];
        if !reason.as_str().unwrap_or("").is_empty() {
            assert_eq!(
                &q["transaction"]["rollback_reason"], reason,
                "dtm's rollback reason is kept: {q}"
            );
        }
        for &(path, expected) in case.calls {
            let calls = busi.calls(path);
            let (by_dtm, by_host) = calls.split_at(called_by_dtm[path]);
            assert_eq!(
                by_host.len(),
                expected,
                "dtm-host called {path} of {} {} times, not {expected}\nlog:\n{}",
                case.gid,
                by_host.len(),
                host.log()
            );
            for call in by_host {
                assert_eq!(call.query["gid"], case.gid, "{call:?}");
                // dtm-host sends what dtm sent (from the records dtm wrote).
                if let Some(sent) = by_dtm.last() {
                    assert_eq!(
                        (&call.method, &call.query, &call.body),
                        (&sent.method, &sent.query, &sent.body),
                        "{path}"
                    );
                }
            }
        }
    }
    eprintln!(
        "dtm-host finished dtm's transactions on {} in {:.1?}",
        backend.name(),
        started.elapsed()
    );
    check_host_is_idle(&host, &busi).await;
}

/// Nothing is left for dtm-host to do: two more seconds bring no call.
async fn check_host_is_idle(host: &Host, busi: &Busi) {
    let before = busi.all_calls().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = busi.all_calls();
    assert_eq!(
        after.len(),
        before,
        "calls after every transaction ended: {:?}\nlog:\n{}",
        &after[before..],
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_switch_from_dtm() {
    switch_from_dtm(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_switch_from_dtm() {
    switch_from_dtm(Backend::Postgres).await;
}
