//! The one test suite every [`Store`] backend must pass (docs/engine.md §4.8, §9 items 68–72).

use super::{BranchOutcome, StatusChange, Store, StoreError};
use crate::model::{
    branch_status, op, Branch, GlobalStatus, Protocol, ScanFilter, TransGlobal, TransOptions,
    TransType,
};

pub fn sample_global(gid: &str, now: i64) -> TransGlobal {
    TransGlobal {
        id: 0,
        gid: gid.to_owned(),
        trans_type: TransType::Saga,
        status: GlobalStatus::Prepared,
        query_prepared: String::new(),
        protocol: Protocol::Http,
        create_time: now,
        update_time: now,
        finish_time: None,
        rollback_time: None,
        options: TransOptions::default(),
        custom_data: String::new(),
        next_cron_interval: 10,
        next_cron_time: now + 10_000,
        owner: String::new(),
        ext_data: String::new(),
        result: String::new(),
        rollback_reason: String::new(),
    }
}

/// A branch record of `gid` with a URL and payload of its own.
pub fn branch(gid: &str, id: &str, op: &str) -> Branch {
    Branch::new(
        gid,
        id.to_owned(),
        op,
        format!("http://busi/{id}/{op}"),
        b"{}".to_vec(),
        1_000,
    )
}

/// Declares the suite for one backend: a `#[tokio::test]` per case, so that each case passes or
/// fails on its own. `$fresh` is an async expression giving `Option<S>`, where `S` derefs to
/// the backend's store: a new, empty store for that case alone (claims see every due record),
/// removed when `S` is dropped; `None` when the backend's server is not installed (the case
/// is skipped, as the helper that said so printed).
macro_rules! store_suite {
    ($fresh:expr) => {
        $crate::store::suite::store_suite!(@cases $fresh;
            ping,
            claim_window,
            claim_a_batch,
            create_if_absent,
            conditional_branch_append,
            branch_outcome_needs_unfinished_global,
            status_change_with_branch_outcomes,
            a_transaction_of_many_branches,
            concurrent_writes_get_their_own_answers,
            status_compare_and_set,
            reset_cron_times,
            scan_pages_and_filters,
            kv_versions,
            claim_one_transaction,
            release_ends_the_hold,
            reset_spares_a_held_transaction,
            count_the_backlog,
            wipe_all);
    };
    (@cases $fresh:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = $fresh.await else { return };
                $crate::store::suite::$case(&*store).await;
            }
        )*
    };
}
pub(crate) use store_suite;

pub async fn ping(store: &dyn Store) {
    store.ping().await.expect("ping");
}

/// A pass claims one transaction while no other pass holds it: one with no owner, its own, or
/// one whose lease has passed; never a finished or unknown one.
pub async fn claim_one_transaction(store: &dyn Store) {
    let base = 30_000_000_000_000;
    let g = sample_global("suite-claim-one", base);
    store.save_new(&g, &[]).await.unwrap();
    let mine = store
        .claim("suite-claim-one", "pass-a", base + 10_000, base)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (mine.owner.as_str(), mine.next_cron_time),
        ("pass-a", base + 10_000)
    );
    assert_eq!(mine.status, GlobalStatus::Prepared);
    let other = store
        .claim("suite-claim-one", "pass-b", base + 20_000, base + 9_999)
        .await;
    assert_eq!(other, Ok(None), "taken from a pass whose lease runs");
    let again = store
        .claim("suite-claim-one", "pass-a", base + 20_000, base + 1)
        .await
        .unwrap();
    assert_eq!(
        again.map(|g| g.next_cron_time),
        Some(base + 20_000),
        "its own again"
    );
    let after_lease = store
        .claim("suite-claim-one", "pass-b", base + 40_000, base + 20_001)
        .await
        .unwrap();
    assert_eq!(after_lease.map(|g| g.owner).as_deref(), Some("pass-b"));
    store
        .change_status(
            "suite-claim-one",
            GlobalStatus::Prepared,
            GlobalStatus::Succeed,
            StatusChange::default(),
            base,
        )
        .await
        .unwrap();
    let finished = store
        .claim("suite-claim-one", "pass-c", i64::MAX, i64::MAX - 1)
        .await;
    assert_eq!(finished, Ok(None));
    assert_eq!(
        store.claim("suite-none", "pass-c", base, base).await,
        Ok(None)
    );
}

/// A released transaction may be claimed by any pass; a release by another pass changes nothing.
pub async fn release_ends_the_hold(store: &dyn Store) {
    let base = 31_000_000_000_000;
    store
        .save_new(&sample_global("suite-release", base), &[])
        .await
        .unwrap();
    store
        .claim("suite-release", "pass-a", base + 10_000, base)
        .await
        .unwrap()
        .unwrap();
    store
        .release("suite-release", "pass-b", base)
        .await
        .unwrap();
    let held = store
        .claim("suite-release", "pass-b", base + 10_000, base)
        .await;
    assert_eq!(held, Ok(None), "released by a pass that did not hold it");
    store
        .release("suite-release", "pass-a", base)
        .await
        .unwrap();
    let stored = store.find_global("suite-release").await.unwrap().unwrap();
    assert_eq!(
        (stored.owner.as_str(), stored.next_cron_time),
        ("", base + 10_000),
        "the schedule stays"
    );
    let claimed = store
        .claim("suite-release", "pass-b", base + 10_000, base)
        .await
        .unwrap();
    assert_eq!(claimed.map(|g| g.owner).as_deref(), Some("pass-b"));
}

/// A reset makes due only a transaction that no pass holds: cutting a lease short would let a
/// second pass start beside the first.
pub async fn reset_spares_a_held_transaction(store: &dyn Store) {
    let base = 32_000_000_000_000;
    let mut g = sample_global("suite-reset-held", base);
    g.next_cron_time = base + 500_000;
    store.save_new(&g, &[]).await.unwrap();
    store
        .claim("suite-reset-held", "pass-a", base + 500_000, base)
        .await
        .unwrap()
        .unwrap();
    store
        .reset_cron_time("suite-reset-held", base + 1)
        .await
        .unwrap();
    assert_eq!(
        store.reset_cron_times(base + 100_000, 10, base + 1).await,
        Ok((0, false))
    );
    let held = store
        .find_global("suite-reset-held")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.next_cron_time, base + 500_000, "the lease stands");
    store
        .release("suite-reset-held", "pass-a", base)
        .await
        .unwrap();
    store
        .reset_cron_time("suite-reset-held", base + 2)
        .await
        .unwrap();
    let reset = store
        .find_global("suite-reset-held")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reset.next_cron_time, base + 2);
}

/// The backlog counts unfinished transactions that are due and not claimed.
pub async fn count_the_backlog(store: &dyn Store) {
    let base = 33_000_000_000_000;
    for (i, next) in [base - 1, base - 1, base + 1].into_iter().enumerate() {
        let mut g = sample_global(&format!("suite-due-{i}"), base);
        g.next_cron_time = next;
        store.save_new(&g, &[]).await.unwrap();
    }
    assert_eq!(store.count_due(base).await, Ok(2));
    store
        .change_status(
            "suite-due-0",
            GlobalStatus::Prepared,
            GlobalStatus::Failed,
            StatusChange::default(),
            base,
        )
        .await
        .unwrap();
    assert_eq!(
        store.count_due(base).await,
        Ok(1),
        "a finished one is no backlog"
    );
    assert_eq!(store.count_due(base + 2).await, Ok(2));
    store
        .claim("suite-due-1", "pass-a", base + 10_000, base)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.count_due(base + 2).await,
        Ok(1),
        "a claimed one is no backlog"
    );
}

/// The wipe removes everything.
pub async fn wipe_all(store: &dyn Store) {
    let g = sample_global("suite-wipe", 1_000);
    store
        .save_new(&g, &[branch(&g.gid, "01", op::ACTION)])
        .await
        .unwrap();
    store
        .create_kv("suite-wipe", "k", "v", 1_000)
        .await
        .unwrap();
    store.wipe_all().await.unwrap();
    let everything = ScanFilter::default();
    let left = store.scan_globals("", 100, &everything).await.unwrap();
    assert!(left.items.is_empty(), "left after wipe: {:?}", left.items);
    assert!(store.find_branches(&g.gid).await.unwrap().is_empty());
    assert!(store.find_kv("", "").await.unwrap().is_empty());
    // The store stays usable.
    store.save_new(&g, &[]).await.unwrap();
}

pub async fn create_if_absent(store: &dyn Store) {
    let g = sample_global("suite-create", 1_000);
    store
        .save_new(&g, &[branch(&g.gid, "01", op::ACTION)])
        .await
        .unwrap();
    let mut other = g.clone();
    other.custom_data = "changed".into();
    let again = store
        .save_new(&other, &[branch(&g.gid, "02", op::ACTION)])
        .await;
    assert_eq!(again, Err(StoreError::UniqueConflict));
    let stored = store.find_global(&g.gid).await.unwrap().unwrap();
    assert_eq!(stored.custom_data, "");
    assert_eq!(store.find_branches(&g.gid).await.unwrap().len(), 1);
}

pub async fn conditional_branch_append(store: &dyn Store) {
    let g = sample_global("suite-append", 1_000);
    store.save_new(&g, &[]).await.unwrap();
    let first = [
        branch(&g.gid, "01", op::CANCEL),
        branch(&g.gid, "01", op::CONFIRM),
    ];
    store
        .append_branches(&g.gid, GlobalStatus::Prepared, &first)
        .await
        .unwrap();
    let second = [
        branch(&g.gid, "02", op::CANCEL),
        branch(&g.gid, "02", op::CONFIRM),
    ];
    store
        .append_branches(&g.gid, GlobalStatus::Prepared, &second)
        .await
        .unwrap();
    let ids: Vec<_> = store
        .find_branches(&g.gid)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.branch_id, b.op))
        .collect();
    assert_eq!(
        ids,
        [
            ("01", "cancel"),
            ("01", "confirm"),
            ("02", "cancel"),
            ("02", "confirm")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let wrong_status = store
        .append_branches(
            &g.gid,
            GlobalStatus::Submitted,
            &[branch(&g.gid, "03", op::CANCEL)],
        )
        .await;
    assert_eq!(wrong_status, Err(StoreError::NotFound));
    let missing = store
        .append_branches(
            "suite-nope",
            GlobalStatus::Prepared,
            &[branch("suite-nope", "01", op::CANCEL)],
        )
        .await;
    assert_eq!(missing, Err(StoreError::NotFound));
    // A duplicate anywhere in the batch rejects the whole batch.
    let dup = [
        branch(&g.gid, "03", op::CANCEL),
        branch(&g.gid, "01", op::CONFIRM),
    ];
    assert_eq!(
        store
            .append_branches(&g.gid, GlobalStatus::Prepared, &dup)
            .await,
        Err(StoreError::UniqueConflict)
    );
    assert_eq!(store.find_branches(&g.gid).await.unwrap().len(), 4);
}

pub fn outcome(branch_id: &str, op: &str, status: &'static str) -> BranchOutcome {
    BranchOutcome {
        branch_id: branch_id.to_owned(),
        op: op.to_owned(),
        status,
    }
}

/// (status, finish_time) of each branch record of `gid`.
async fn branch_states(store: &dyn Store, gid: &str) -> Vec<(String, Option<i64>)> {
    let branches = store.find_branches(gid).await.unwrap();
    branches
        .into_iter()
        .map(|b| (b.status, b.finish_time))
        .collect()
}

pub async fn branch_outcome_needs_unfinished_global(store: &dyn Store) {
    let g = sample_global("suite-outcome", 1_000);
    let records = [
        branch(&g.gid, "01", op::COMPENSATE),
        branch(&g.gid, "01", op::ACTION),
        branch(&g.gid, "02", op::ACTION),
    ];
    store.save_new(&g, &records).await.unwrap();
    let prepared = || ("prepared".to_owned(), None);
    let succeed = outcome("01", op::ACTION, branch_status::SUCCEED);
    store
        .save_branch_outcomes(&g.gid, std::slice::from_ref(&succeed), 2_000)
        .await
        .unwrap();
    let written = ("succeed".to_owned(), Some(2_000));
    assert_eq!(
        branch_states(store, &g.gid).await,
        [prepared(), written.clone(), prepared()]
    );

    // All or nothing: one unknown record refuses the whole batch.
    let batch = [
        outcome("02", op::ACTION, branch_status::FAILED),
        outcome("09", op::ACTION, branch_status::SUCCEED),
    ];
    assert_eq!(
        store.save_branch_outcomes(&g.gid, &batch, 2_500).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        branch_states(store, &g.gid).await,
        [prepared(), written.clone(), prepared()]
    );

    // Several outcomes, of different statuses, in one write.
    let batch = [
        outcome("02", op::ACTION, branch_status::FAILED),
        outcome("01", op::COMPENSATE, branch_status::SUCCEED),
    ];
    store
        .save_branch_outcomes(&g.gid, &batch, 2_600)
        .await
        .unwrap();
    assert_eq!(
        branch_states(store, &g.gid).await,
        [
            ("succeed".to_owned(), Some(2_600)),
            written,
            ("failed".to_owned(), Some(2_600))
        ]
    );

    // A record named twice in one batch ends with its last outcome.
    let batch = [
        outcome("02", op::ACTION, branch_status::FAILED),
        outcome("02", op::ACTION, branch_status::SUCCEED),
        outcome("02", op::ACTION, branch_status::SUCCEED),
    ];
    store
        .save_branch_outcomes(&g.gid, &batch, 2_700)
        .await
        .unwrap();
    assert_eq!(
        branch_states(store, &g.gid).await[2],
        ("succeed".to_owned(), Some(2_700))
    );

    store
        .change_status(
            &g.gid,
            GlobalStatus::Prepared,
            GlobalStatus::Failed,
            StatusChange::default(),
            3_000,
        )
        .await
        .unwrap();
    assert_eq!(
        store.save_branch_outcomes(&g.gid, &[succeed], 4_000).await,
        Err(StoreError::NotFound)
    );
}

/// A status change writes the branch outcomes it carries in the same atomic step.
pub async fn status_change_with_branch_outcomes(store: &dyn Store) {
    let g = sample_global("suite-change-outcomes", 1_000);
    let records = [
        branch(&g.gid, "01", op::ACTION),
        branch(&g.gid, "02", op::ACTION),
    ];
    store.save_new(&g, &records).await.unwrap();
    let change = |outcomes: Vec<BranchOutcome>| StatusChange {
        branch_outcomes: outcomes,
        ..Default::default()
    };
    let both = vec![
        outcome("01", op::ACTION, branch_status::SUCCEED),
        outcome("02", op::ACTION, branch_status::SUCCEED),
    ];
    let with_unknown = vec![
        outcome("01", op::ACTION, branch_status::SUCCEED),
        outcome("07", op::ACTION, branch_status::SUCCEED),
    ];
    let to_succeed = |change| {
        store.change_status(
            &g.gid,
            GlobalStatus::Prepared,
            GlobalStatus::Succeed,
            change,
            2_000,
        )
    };
    assert_eq!(
        to_succeed(change(with_unknown)).await,
        Err(StoreError::NotFound)
    );
    let unchanged = store.find_global(&g.gid).await.unwrap().unwrap();
    assert_eq!(unchanged.status, GlobalStatus::Prepared);
    let prepared = ("prepared".to_owned(), None);
    assert_eq!(
        branch_states(store, &g.gid).await,
        [prepared.clone(), prepared.clone()]
    );

    // A failed compare-and-set writes none of the outcomes either.
    let wrong_from = store
        .change_status(
            &g.gid,
            GlobalStatus::Submitted,
            GlobalStatus::Succeed,
            change(both.clone()),
            2_000,
        )
        .await;
    assert_eq!(wrong_from, Err(StoreError::NotFound));
    assert_eq!(
        branch_states(store, &g.gid).await,
        [prepared.clone(), prepared]
    );

    to_succeed(change(both)).await.unwrap();
    let done = store.find_global(&g.gid).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.finish_time),
        (GlobalStatus::Succeed, Some(2_000))
    );
    let succeed = ("succeed".to_owned(), Some(2_000));
    assert_eq!(
        branch_states(store, &g.gid).await,
        [succeed.clone(), succeed]
    );
}

/// A saga of thousands of steps: its records and its outcomes are written whole, though they
/// outnumber what one call may carry in some backends if sent at once (Lua's `unpack` takes at
/// most 8000 values, an SQLite statement at most 32766 parameters).
pub async fn a_transaction_of_many_branches(store: &dyn Store) {
    const N: usize = 4_000;
    let g = sample_global("suite-many-branches", 1_000);
    let records: Vec<Branch> = (0..N)
        .map(|i| branch(&g.gid, &format!("{i:04}"), op::ACTION))
        .collect();
    store.save_new(&g, &records).await.unwrap();
    let outcomes = |range: std::ops::Range<usize>| -> Vec<BranchOutcome> {
        range
            .map(|i| outcome(&format!("{i:04}"), op::ACTION, branch_status::SUCCEED))
            .collect()
    };
    store
        .save_branch_outcomes(&g.gid, &outcomes(0..N / 2), 2_000)
        .await
        .unwrap();
    let change = StatusChange {
        branch_outcomes: outcomes(N / 2..N),
        ..Default::default()
    };
    store
        .change_status(
            &g.gid,
            GlobalStatus::Prepared,
            GlobalStatus::Succeed,
            change,
            3_000,
        )
        .await
        .unwrap();
    let branches = store.find_branches(&g.gid).await.unwrap();
    assert_eq!(branches.len(), N);
    for (i, b) in branches.iter().enumerate() {
        let finished = if i < N / 2 { 2_000 } else { 3_000 };
        assert_eq!(
            (
                b.branch_id.as_str(),
                b.url.as_str(),
                b.status.as_str(),
                b.finish_time
            ),
            (
                format!("{i:04}").as_str(),
                format!("http://busi/{i:04}/action").as_str(),
                "succeed",
                Some(finished)
            )
        );
    }
}

/// Writes of many transactions at once, as a loaded coordinator makes them (PostgreSQL writes
/// them in groups, one statement a group: `sql/group_commit.rs`): each gets the answer it gets
/// alone, and writes what it writes alone.
pub async fn concurrent_writes_get_their_own_answers(store: &dyn Store) {
    use futures::future::join_all;
    const N: usize = 12;
    let gid = |i: usize| format!("suite-many-{i:02}");
    let prepared = || ("prepared".to_owned(), None);
    for i in (0..N).step_by(2) {
        let g = gid(i);
        store
            .save_new(&sample_global(&g, 1_000), &[branch(&g, "00", op::ACTION)])
            .await
            .unwrap();
    }

    // Creations: the even ones exist already.
    let created = join_all((0..N).map(|i| async move {
        let g = gid(i);
        let records = [
            branch(&g, "01", op::COMPENSATE),
            branch(&g, "01", op::ACTION),
            branch(&g, "02", op::ACTION),
        ];
        store.save_new(&sample_global(&g, 2_000), &records).await
    }))
    .await;
    for (i, result) in created.into_iter().enumerate() {
        let records: Vec<String> = store
            .find_branches(&gid(i))
            .await
            .unwrap()
            .into_iter()
            .map(|b| format!("{}/{}", b.branch_id, b.op))
            .collect();
        if i % 2 == 0 {
            assert_eq!(result, Err(StoreError::UniqueConflict), "{i}");
            assert_eq!(records, ["00/action"], "{i}");
        } else {
            assert_eq!(result, Ok(()), "{i}");
            assert_eq!(records, ["01/compensate", "01/action", "02/action"], "{i}");
        }
    }

    // Branch results of the odd ones: 1 has finished, 3, 7 and 11 name an unknown record.
    store
        .change_status(
            &gid(1),
            GlobalStatus::Prepared,
            GlobalStatus::Failed,
            StatusChange::default(),
            1_500,
        )
        .await
        .unwrap();
    let unknown = |i: usize| i % 4 == 3;
    let saved = join_all((1..N).step_by(2).map(|i| async move {
        let mut outcomes = vec![
            outcome("01", op::ACTION, branch_status::SUCCEED),
            outcome("02", op::ACTION, branch_status::FAILED),
            outcome("02", op::ACTION, branch_status::SUCCEED),
        ];
        if unknown(i) {
            outcomes.push(outcome("09", op::ACTION, branch_status::SUCCEED));
        }
        let result = store
            .save_branch_outcomes(&gid(i), &outcomes, 2_000 + i as i64)
            .await;
        (i, result)
    }))
    .await;
    for (i, result) in saved {
        let states = branch_states(store, &gid(i)).await;
        if i == 1 || unknown(i) {
            assert_eq!(result, Err(StoreError::NotFound), "{i}");
            assert_eq!(states, [prepared(), prepared(), prepared()], "{i}");
        } else {
            assert_eq!(result, Ok(()), "{i}");
            let written = ("succeed".to_owned(), Some(2_000 + i as i64));
            assert_eq!(states, [prepared(), written.clone(), written], "{i}");
        }
    }

    // Status changes: the even ones to submitted; of the odd ones 1 has finished, 3 names an
    // unknown record, 7 expects the wrong status, the others succeed with an outcome and a
    // result.
    let changed = join_all((0..N).map(|i| async move {
        let (from, to, outcomes) = match i {
            _ if i % 2 == 0 => (GlobalStatus::Prepared, GlobalStatus::Submitted, vec![]),
            3 => (
                GlobalStatus::Prepared,
                GlobalStatus::Succeed,
                vec![outcome("08", op::ACTION, branch_status::SUCCEED)],
            ),
            7 => (GlobalStatus::Submitted, GlobalStatus::Succeed, vec![]),
            _ => (
                GlobalStatus::Prepared,
                GlobalStatus::Succeed,
                vec![outcome("01", op::COMPENSATE, branch_status::SUCCEED)],
            ),
        };
        let change = StatusChange {
            result: Some(format!("r{i}")),
            branch_outcomes: outcomes,
            ..Default::default()
        };
        let result = store
            .change_status(&gid(i), from, to, change, 3_000 + i as i64)
            .await;
        (i, result)
    }))
    .await;
    for (i, result) in changed {
        let g = store.find_global(&gid(i)).await.unwrap().unwrap();
        let first = branch_states(store, &gid(i)).await[0].clone();
        match i {
            _ if i % 2 == 0 => {
                assert_eq!(result, Ok(()), "{i}");
                assert_eq!(
                    (g.status, g.result),
                    (GlobalStatus::Submitted, format!("r{i}"))
                );
            }
            1 | 3 | 7 => {
                assert_eq!(result, Err(StoreError::NotFound), "{i}");
                assert_eq!(g.result, "", "{i}");
                assert_eq!(first, prepared(), "{i}");
            }
            _ => {
                assert_eq!(result, Ok(()), "{i}");
                let t = Some(3_000 + i as i64);
                assert_eq!(
                    (g.status, g.finish_time, g.result),
                    (GlobalStatus::Succeed, t, format!("r{i}"))
                );
                assert_eq!(first, ("succeed".to_owned(), t), "{i}");
            }
        }
    }
}

pub async fn status_compare_and_set(store: &dyn Store) {
    let g = sample_global("suite-cas", 1_000);
    store.save_new(&g, &[]).await.unwrap();
    let wrong = store
        .change_status(
            &g.gid,
            GlobalStatus::Submitted,
            GlobalStatus::Succeed,
            StatusChange::default(),
            2_000,
        )
        .await;
    assert_eq!(wrong, Err(StoreError::NotFound));
    store
        .change_status(
            &g.gid,
            GlobalStatus::Prepared,
            GlobalStatus::Submitted,
            StatusChange::default(),
            2_000,
        )
        .await
        .unwrap();
    let change = StatusChange {
        rollback_reason: Some("why".into()),
        ..Default::default()
    };
    store
        .change_status(
            &g.gid,
            GlobalStatus::Submitted,
            GlobalStatus::Succeed,
            change,
            3_000,
        )
        .await
        .unwrap();
    let stored = store.find_global(&g.gid).await.unwrap().unwrap();
    assert_eq!(stored.status, GlobalStatus::Succeed);
    assert_eq!(stored.finish_time, Some(3_000));
    assert_eq!(stored.rollback_time, None);
    assert_eq!(stored.rollback_reason, "why");
    assert_eq!(
        store
            .change_status(
                "suite-none",
                GlobalStatus::Prepared,
                GlobalStatus::Failed,
                StatusChange::default(),
                1
            )
            .await,
        Err(StoreError::NotFound)
    );
}

pub async fn claim_window(store: &dyn Store) {
    let base = 10_000_000_000_000;
    let mut g = sample_global("suite-claim", base);
    g.next_cron_time = base + 10_000;
    store.save_new(&g, &[]).await.unwrap();
    assert!(store
        .claim_due(base + 5_000, base + 100_000, base, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
    let claimed = store
        .claim_due(base + 20_000, base + 30_000, base, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(claimed.gid, g.gid);
    assert_eq!(claimed.next_cron_time, base + 30_000);
    assert!(!claimed.owner.is_empty());
    // The lease hides it from the next claim.
    assert!(store
        .claim_due(base + 20_000, base + 30_000, base, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
    store
        .touch_cron_time(
            &g.gid,
            GlobalStatus::Prepared,
            &claimed.owner,
            10,
            base + 10_000,
            base,
        )
        .await
        .unwrap();
    let again = store
        .claim_due(base + 20_000, base + 30_000, base, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_ne!(
        again.owner, claimed.owner,
        "each claim has a token of its own"
    );
    // A touch with a stale status, or by the pass whose claim was taken over, changes nothing.
    let stale = store
        .touch_cron_time(
            &g.gid,
            GlobalStatus::Submitted,
            &again.owner,
            10,
            base,
            base,
        )
        .await;
    assert_eq!(stale, Err(StoreError::NotFound));
    let taken_over = store
        .touch_cron_time(
            &g.gid,
            GlobalStatus::Prepared,
            &claimed.owner,
            10,
            base,
            base,
        )
        .await;
    assert_eq!(taken_over, Err(StoreError::NotFound));
    assert_eq!(
        store
            .find_global(&g.gid)
            .await
            .unwrap()
            .unwrap()
            .next_cron_time,
        base + 30_000
    );
    store
        .change_status(
            &g.gid,
            GlobalStatus::Prepared,
            GlobalStatus::Succeed,
            StatusChange::default(),
            base,
        )
        .await
        .unwrap();
    assert!(store
        .claim_due(i64::MAX, base, base, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
}

/// One claim takes at most its limit of due, unfinished transactions, each once, and stamps
/// them all with its lease and one token of its own; the next claim takes the rest.
pub async fn claim_a_batch(store: &dyn Store) {
    let base = 11_000_000_000_000;
    for i in 0..5 {
        let mut g = sample_global(&format!("suite-batch-due-{i}"), base);
        g.next_cron_time = base + i;
        store.save_new(&g, &[]).await.unwrap();
    }
    let mut later = sample_global("suite-batch-later", base);
    later.next_cron_time = base + 50_000;
    store.save_new(&later, &[]).await.unwrap();
    let mut finished = sample_global("suite-batch-finished", base);
    finished.status = GlobalStatus::Succeed;
    store.save_new(&finished, &[]).await.unwrap();
    let lease = base + 100_000;
    let first = store.claim_due(base + 1_000, lease, base, 3).await.unwrap();
    assert_eq!(first.len(), 3, "{first:?}");
    let second = store
        .claim_due(base + 1_000, lease, base, 10)
        .await
        .unwrap();
    let mut gids: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|g| g.gid.as_str())
        .collect();
    gids.sort_unstable();
    let due: Vec<String> = (0..5).map(|i| format!("suite-batch-due-{i}")).collect();
    assert_eq!(gids, due, "each due transaction once, nothing else");
    for batch in [&first, &second] {
        assert!(batch.iter().all(|g| g.next_cron_time == lease));
        assert!(batch
            .iter()
            .all(|g| g.owner == batch[0].owner && !g.owner.is_empty()));
    }
    assert_ne!(
        first[0].owner, second[0].owner,
        "each batch has a token of its own"
    );
    for g in &first {
        let stored = store.find_global(&g.gid).await.unwrap().unwrap();
        assert_eq!(
            (stored.next_cron_time, stored.owner.as_str()),
            (lease, g.owner.as_str())
        );
    }
    assert!(store
        .claim_due(base + 1_000, lease, base, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .claim_due(base + 1_000, lease, base, 0)
        .await
        .unwrap()
        .is_empty());
}

pub async fn reset_cron_times(store: &dyn Store) {
    let base = 20_000_000_000_000;
    for i in 0..3 {
        let mut g = sample_global(&format!("suite-reset-{i}"), base);
        g.next_cron_time = base + 110_000;
        store.save_new(&g, &[]).await.unwrap();
    }
    assert_eq!(
        store
            .reset_cron_times(base + 100_000, 2, base)
            .await
            .unwrap(),
        (2, true)
    );
    assert_eq!(
        store
            .reset_cron_times(base + 100_000, 2, base)
            .await
            .unwrap(),
        (1, false)
    );
    assert_eq!(
        store
            .reset_cron_times(base + 100_000, 2, base)
            .await
            .unwrap(),
        (0, false)
    );
    store
        .reset_cron_time("suite-reset-0", base + 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_global("suite-reset-0")
            .await
            .unwrap()
            .unwrap()
            .next_cron_time,
        base + 1
    );
    assert_eq!(
        store.reset_cron_time("suite-none", base).await,
        Err(StoreError::NotFound)
    );
    for i in 0..3 {
        store
            .change_status(
                &format!("suite-reset-{i}"),
                GlobalStatus::Prepared,
                GlobalStatus::Failed,
                StatusChange::default(),
                base,
            )
            .await
            .unwrap();
    }
}

pub async fn scan_pages_and_filters(store: &dyn Store) {
    for i in 0..3 {
        let mut g = sample_global(&format!("suite-scan-{i}"), 5_000 + i);
        g.trans_type = TransType::Msg;
        store.save_new(&g, &[]).await.unwrap();
    }
    let filter = ScanFilter {
        trans_type: "msg".into(),
        ..Default::default()
    };
    let first = store.scan_globals("", 2, &filter).await.unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|g| g.gid.as_str())
            .collect::<Vec<_>>(),
        ["suite-scan-2", "suite-scan-1"]
    );
    assert_ne!(first.next_position, "");
    let rest = store
        .scan_globals(&first.next_position, 2, &filter)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_position, "");
    let window = ScanFilter {
        create_start: Some(5_001),
        create_end: Some(5_001),
        ..filter.clone()
    };
    let one = store.scan_globals("", 10, &window).await.unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].gid, "suite-scan-1");
    let status = ScanFilter {
        status: "succeed".into(),
        ..filter
    };
    assert!(store
        .scan_globals("", 10, &status)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store
            .scan_globals("x", 1, &ScanFilter::default())
            .await
            .err(),
        Some(StoreError::BadCursor("x".into()))
    );
}

pub async fn kv_versions(store: &dyn Store) {
    store.create_kv("suite", "a", "1", 1).await.unwrap();
    assert_eq!(
        store.create_kv("suite", "a", "2", 1).await,
        Err(StoreError::UniqueConflict)
    );
    store.create_kv("suite", "b", "1", 1).await.unwrap();
    store.update_kv("suite", "a", "2", 1, 2).await.unwrap();
    assert_eq!(
        store.update_kv("suite", "a", "3", 1, 3).await,
        Err(StoreError::NotFound)
    );
    let a = store.find_kv("suite", "a").await.unwrap();
    assert_eq!((a.len(), a[0].v.as_str(), a[0].version), (1, "2", 2));
    assert!(store.find_kv("suite", "zzz").await.unwrap().is_empty());
    assert_eq!(store.find_kv("suite", "").await.unwrap().len(), 2);
    let page = store.scan_kv("suite", "", 1).await.unwrap();
    assert_eq!(page.items[0].k, "b");
    let next = store
        .scan_kv("suite", &page.next_position, 10)
        .await
        .unwrap();
    assert_eq!((next.items.len(), next.next_position.as_str()), (1, ""));
    // One cursor rule on every backend: "0", like "", is the start.
    let from_zero = store.scan_kv("suite", "0", 1).await.unwrap();
    assert_eq!(from_zero.items[0].k, "b");
    store.delete_kv("suite", "a").await.unwrap();
    assert_eq!(
        store.delete_kv("suite", "a").await,
        Err(StoreError::NotFound)
    );
}
