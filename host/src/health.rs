//! Readiness (`GET /api/ready`): whether this coordinator can take work now. The store must
//! answer a cheap query in time; the microservice driver is loaded before the listeners open,
//! so a served request always has it, and the answer names it.

use std::sync::Arc;
use std::time::Duration;

use crate::call::Caller;
use crate::store::{Store, StoreError};

/// Longest the store may take to answer the readiness query.
const STORE_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("not ready: the {driver} store does not answer: {source}")]
    Store { driver: String, source: StoreError },
    #[error("not ready: the {driver} store did not answer within {} s", STORE_DEADLINE.as_secs())]
    StoreTimeout { driver: String },
}

/// What a ready coordinator reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub store: String,
    pub driver: String,
}

pub struct Readiness {
    store: Arc<dyn Store>,
    /// `Store.Driver`, for the answers.
    store_driver: String,
    /// Asked for the driver serving now (it changes with reloads).
    caller: Caller,
}

impl Readiness {
    pub fn new(store: Arc<dyn Store>, store_driver: &str, caller: Caller) -> Self {
        Self {
            store,
            store_driver: store_driver.to_owned(),
            caller,
        }
    }

    pub async fn check(&self) -> Result<Ready, NotReady> {
        let driver = self.store_driver.clone();
        match tokio::time::timeout(STORE_DEADLINE, self.store.ping()).await {
            Ok(Ok(())) => Ok(Ready {
                store: driver,
                driver: self.caller.driver().name().to_owned(),
            }),
            Ok(Err(source)) => Err(NotReady::Store { driver, source }),
            Err(_) => Err(NotReady::StoreTimeout { driver }),
        }
    }
}
