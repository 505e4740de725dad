//! At most one pass per transaction in this process: a request that would start a pass while
//! one runs here joins it instead (docs/engine.md §3.10, and README "Storage and
//! recovery"). Between processes the store's claim decides (a lease with an owner token); this
//! registry answers first what this host already knows, without a store round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// The transactions whose pass runs in this process.
#[derive(Default)]
pub(super) struct Passes {
    running: Mutex<HashMap<String, Running>>,
}

struct Running {
    /// A request asked for another pass while this one ran.
    again: bool,
    /// Dropped (so its receivers wake) when the pass, and any it runs again, has ended.
    ended: watch::Sender<()>,
}

/// What [`Passes::enter`] found.
pub(super) enum Entry {
    /// No pass of the transaction runs here; the caller may start one while it holds this.
    Mine(Hold),
    /// A pass runs here; this tells when it has ended.
    Busy(Busy),
}

/// The right to run the transaction's pass in this process, until dropped.
pub(super) struct Hold {
    passes: Arc<Passes>,
    gid: String,
}

/// A pass of this process that runs now.
pub(super) struct Busy {
    ended: watch::Receiver<()>,
}

impl Passes {
    fn running(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        // The map stays consistent even if a holder panicked: every change is one statement.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the right to run `gid`'s pass here, or reports the pass that runs; with
    /// `again`, that pass is asked to run once more when it ends.
    pub(super) fn enter(self: &Arc<Self>, gid: &str, again: bool) -> Entry {
        let mut running = self.running();
        if let Some(run) = running.get_mut(gid) {
            run.again |= again;
            return Entry::Busy(Busy {
                ended: run.ended.subscribe(),
            });
        }
        let (ended, _) = watch::channel(());
        running.insert(
            gid.to_owned(),
            Running {
                again: false,
                ended,
            },
        );
        Entry::Mine(Hold {
            passes: self.clone(),
            gid: gid.to_owned(),
        })
    }

    /// The right to run `gid`'s pass here, once the pass that runs now (if any) has ended.
    pub(super) async fn hold(self: &Arc<Self>, gid: &str) -> Hold {
        loop {
            match self.enter(gid, false) {
                Entry::Mine(hold) => return hold,
                Entry::Busy(busy) => busy.ended().await,
            }
        }
    }
}

impl Hold {
    pub(super) fn gid(&self) -> &str {
        &self.gid
    }

    /// Whether a request asked for another pass since the last look (and forgets that it did).
    pub(super) fn take_again(&self) -> bool {
        self.passes
            .running()
            .get_mut(&self.gid)
            .is_some_and(|run| std::mem::take(&mut run.again))
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.passes.running().remove(&self.gid);
    }
}

impl Busy {
    pub(super) async fn ended(mut self) {
        // Err once the sender is gone: the pass has ended.
        while self.ended.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_others_learn_when_it_ends() {
        let passes = Arc::new(Passes::default());
        let Entry::Mine(hold) = passes.enter("g", false) else {
            panic!("the first one holds");
        };
        let Entry::Busy(busy) = passes.enter("g", true) else {
            panic!("a second one must wait");
        };
        assert!(matches!(passes.enter("other", false), Entry::Mine(_)));
        assert!(hold.take_again(), "asked to run again");
        assert!(!hold.take_again(), "asked once");
        let waiter = tokio::spawn(passes.clone().hold_owned("g"));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "held while the first holds");
        drop(hold);
        busy.ended().await;
        let second = waiter.await.unwrap();
        assert_eq!(second.gid(), "g");
        assert!(matches!(passes.enter("g", false), Entry::Busy(_)));
        drop(second);
        assert!(matches!(passes.enter("g", false), Entry::Mine(_)));
    }

    impl Passes {
        async fn hold_owned(self: Arc<Self>, gid: &'static str) -> Hold {
            self.hold(gid).await
        }
    }
}
