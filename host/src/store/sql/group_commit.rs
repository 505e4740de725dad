//! Group commit: writes that concurrent transactions ask for at the same moment are handed to one
//! statement together, so the server parses, plans, executes and commits once for the group
//! instead of once per write. Under load that is most of a SQL server's work per transaction.
//!
//! A writer queues its write and waits. A collector takes what is queued whenever fewer than
//! [`IN_FLIGHT`] writes of the kind are running, so a group grows while the server is busy with
//! the ones before it. A write alone in the queue is not held back: it comes back
//! [`Grouped::Alone`] with its slot, and its writer runs its usual statement while holding it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::OPERATION_TIMEOUT;
use crate::store::{StoreError, StoreResult};

/// Writes of one kind (group statements, or writes alone holding a slot) running at once. More
/// would leave fewer writes queued to group; fewer would leave the server idle between them.
const IN_FLIGHT: usize = 2;
/// Most writes in one group: keeps a statement's parameters and its locks bounded.
const MAX_GROUP: usize = 256;

/// What a queued write learns.
#[derive(Debug)]
pub(super) enum Grouped {
    /// Written, or refused (`NotFound`, `UniqueConflict`), by a group statement; or the group
    /// statement's outcome is unknown (a backend error).
    Done(StoreResult<()>),
    /// Not written: alone in the queue (then with its slot, held until it is written), its
    /// transaction named twice in one group, or the group statement failed as a whole. The
    /// writer writes it with its own statement.
    Alone(Option<OwnedSemaphorePermit>),
}

/// A write that names its transaction: a group holds each transaction once, so that writes of one
/// transaction never race inside one statement.
pub(super) trait Write: Send + 'static {
    fn gid(&self) -> &str;
}

/// What a group statement gives for each write of the group, in order.
pub(super) type GroupResults = Vec<StoreResult<()>>;

type Queued<W> = (W, oneshot::Sender<Grouped>);

/// The queue of one kind of write, and its collector.
pub(super) struct GroupCommit<W> {
    queue: mpsc::UnboundedSender<Queued<W>>,
}

impl<W: Write> GroupCommit<W> {
    /// Starts the collector, which runs `write_group` on each group of two or more writes; an
    /// `Err` from it hands every write of the group back to its writer. Must be called within a
    /// tokio runtime; the collector ends with the last handle.
    pub(super) fn start<F, Fut>(write_group: F) -> Self
    where
        F: Fn(Vec<W>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<GroupResults, StoreError>> + Send + 'static,
    {
        let (queue, queued) = mpsc::unbounded_channel();
        tokio::spawn(collect(queued, Arc::new(write_group)));
        Self { queue }
    }

    /// Queues `write` and waits for its group's outcome.
    pub(super) async fn write(&self, write: W) -> Grouped {
        let (reply, outcome) = oneshot::channel();
        if self.queue.send((write, reply)).is_err() {
            return Grouped::Alone(None);
        }
        // The collector replies to every write it takes; no reply means the runtime is going down
        // with the group statement possibly sent.
        outcome
            .await
            .unwrap_or(Grouped::Done(Err(StoreError::Backend(
                "group commit stopped".to_owned(),
            ))))
    }
}

async fn collect<W, F, Fut>(mut queued: mpsc::UnboundedReceiver<Queued<W>>, write_group: Arc<F>)
where
    W: Write,
    F: Fn(Vec<W>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<GroupResults, StoreError>> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queued.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut named = HashSet::with_capacity(group.len());
        let (mut group, again): (Vec<_>, Vec<_>) = group
            .into_iter()
            .partition(|(write, _)| named.insert(write.gid().to_owned()));
        for (_, reply) in again {
            let _ = reply.send(Grouped::Alone(None));
        }
        if group.len() < 2 {
            if let Some((_, reply)) = group.pop() {
                let _ = reply.send(Grouped::Alone(Some(slot)));
            }
            continue;
        }
        let write_group = write_group.clone();
        tokio::spawn(async move {
            let (writes, replies): (Vec<W>, Vec<_>) = group.into_iter().unzip();
            let count = writes.len();
            let outcome = tokio::time::timeout(OPERATION_TIMEOUT, write_group(writes)).await;
            drop(slot);
            match outcome {
                Ok(Ok(results)) if results.len() == count => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Grouped::Done(result));
                    }
                }
                Ok(Ok(results)) => {
                    let wrong = format!("a group statement answered {} of {count}", results.len());
                    for reply in replies {
                        let _ = reply.send(Grouped::Done(Err(StoreError::Backend(wrong.clone()))));
                    }
                }
                // A statement that failed wrote nothing: each write goes its own way, where a
                // deadlock is retried and an error is told with its cause.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, writes = count, "store: a group statement failed");
                    for reply in replies {
                        let _ = reply.send(Grouped::Alone(None));
                    }
                }
                Err(_) => {
                    let late = format!("no answer within {} s", OPERATION_TIMEOUT.as_secs());
                    for reply in replies {
                        let _ = reply.send(Grouped::Done(Err(StoreError::Backend(late.clone()))));
                    }
                }
            }
        });
    }
}
