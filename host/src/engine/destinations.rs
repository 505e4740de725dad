//! Which business services the recovery loop's passes are calling, so that one that fails
//! cannot take every recovery slot: a destination whose last recovery pass left its
//! transaction unfinished may have at most a quarter of the slots; the others go on meanwhile. A healthy destination has no limit
//! of its own, so a backlog of one service drains with every slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::{branch_status, Branch, TransGlobal};

#[derive(Default)]
struct Destination {
    in_flight: usize,
    failing: bool,
}

pub(super) struct Destinations {
    /// Passes at once that a failing destination may have.
    failing_limit: usize,
    by_name: Mutex<HashMap<String, Destination>>,
}

/// One recovery pass's place at its destination, until dropped.
pub(super) struct Visit {
    destinations: Arc<Destinations>,
    name: String,
}

impl Destinations {
    pub(super) fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            failing_limit: (slots / 4).max(1),
            by_name: Mutex::default(),
        })
    }

    fn by_name(&self) -> MutexGuard<'_, HashMap<String, Destination>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a pass to `name`; `None` while it is failing and has its share already.
    pub(super) fn visit(self: &Arc<Self>, name: String) -> Option<Visit> {
        let mut by_name = self.by_name();
        let destination = by_name.entry(name.clone()).or_default();
        if destination.failing && destination.in_flight >= self.failing_limit {
            return None;
        }
        destination.in_flight += 1;
        Some(Visit {
            destinations: self.clone(),
            name,
        })
    }
}

impl Visit {
    /// Records how the pass went: one that did not finish its transaction marks the
    /// destination failing until a pass to it does.
    pub(super) fn ended(&self, ok: bool) {
        if let Some(destination) = self.destinations.by_name().get_mut(&self.name) {
            destination.failing = !ok;
        }
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        let mut by_name = self.destinations.by_name();
        if let Some(destination) = by_name.get_mut(&self.name) {
            destination.in_flight = destination.in_flight.saturating_sub(1);
            if destination.in_flight == 0 && !destination.failing {
                by_name.remove(&self.name);
            }
        }
    }
}

/// Where a pass on `global` calls first: the service of its first branch still to call (or of
/// its check-back URL), as `host:port` (the URL up to its path, without the scheme).
pub(super) fn destination_of(global: &TransGlobal, branches: &[Branch]) -> String {
    let url = branches
        .iter()
        .find(|b| b.is(branch_status::PREPARED) && !b.url.is_empty())
        .map_or(global.query_prepared.as_str(), |b| b.url.as_str());
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_destination_gets_a_quarter_of_the_slots_and_a_healthy_one_all() {
        let destinations = Destinations::new(8);
        let healthy: Vec<Visit> = (0..8)
            .map(|_| destinations.visit("up:1".into()).unwrap())
            .collect();
        let first = destinations.visit("down:1".into()).unwrap();
        first.ended(false);
        let second = destinations.visit("down:1".into()).unwrap();
        assert!(
            destinations.visit("down:1".into()).is_none(),
            "over its share"
        );
        drop(first);
        assert!(
            destinations.visit("down:1".into()).is_some(),
            "a place came free"
        );
        second.ended(true);
        drop(second);
        let many: Vec<Visit> = (0..5)
            .map(|_| destinations.visit("down:1".into()).unwrap())
            .collect();
        assert_eq!(
            (healthy.len(), many.len()),
            (8, 5),
            "healthy again: no limit"
        );
    }

    #[test]
    fn the_destination_is_the_service_of_the_first_branch_to_call() {
        let mut g = crate::store::suite::sample_global("g", 0);
        g.query_prepared = "http://check:1/q".into();
        let branch = |url: &str, status: &str| {
            let mut b = Branch::new("g", "01".into(), "action", url.into(), vec![], 0);
            b.status = status.into();
            b
        };
        let done = branch("http://a:1/x", branch_status::SUCCEED);
        let next = branch("grpc-host:50051/busi.Busi/TransIn", branch_status::PREPARED);
        assert_eq!(destination_of(&g, &[done.clone(), next]), "grpc-host:50051");
        assert_eq!(destination_of(&g, &[done]), "check:1");
    }
}
