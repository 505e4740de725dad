//! Topics for msg fan-out: subscriber lists kept in the key-value store under category
//! `topics`, changed by version check (docs/engine.md §4.7). Subscribers are read from the store
//! when a message is created, so a change is seen at once (dtm caches them for seconds).

use serde::{Deserialize, Serialize};

use super::Engine;
use crate::error::{DtmError, DtmResult};

const TOPICS_CATEGORY: &str = "topics";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Subscriber {
    #[serde(default)]
    url: String,
    #[serde(default)]
    remark: String,
}

fn parse(value: &str) -> DtmResult<Vec<Subscriber>> {
    serde_json::from_str(value)
        .map_err(|e| DtmError::Other(format!("stored topic is not readable: {e}")))
}

fn to_json(subscribers: &[Subscriber]) -> String {
    serde_json::to_string(subscribers).unwrap_or_default()
}

fn require(topic: &str, url: &str) -> DtmResult<()> {
    if topic.is_empty() {
        return Err(DtmError::Other("empty topic".into()));
    }
    if url.is_empty() {
        return Err(DtmError::Other("empty url".into()));
    }
    Ok(())
}

impl Engine {
    pub async fn subscribe(&self, topic: &str, url: &str, remark: &str) -> DtmResult<()> {
        require(topic, url)?;
        let subscriber = Subscriber {
            url: url.to_owned(),
            remark: remark.to_owned(),
        };
        let Some((mut subscribers, version)) = self.load_topic(topic).await? else {
            let value = to_json(&[subscriber]);
            return Ok(self
                .store
                .create_kv(TOPICS_CATEGORY, topic, &value, self.now())
                .await?);
        };
        if subscribers.iter().any(|s| s.url == url) {
            return Err(DtmError::Other("this url exists".into()));
        }
        subscribers.push(subscriber);
        self.save_topic(topic, &subscribers, version).await
    }

    pub async fn unsubscribe(&self, topic: &str, url: &str) -> DtmResult<()> {
        require(topic, url)?;
        let Some((mut subscribers, version)) = self.load_topic(topic).await? else {
            return Err(DtmError::Other("no such a topic".into()));
        };
        if subscribers.is_empty() {
            return Err(DtmError::Other("this topic is empty".into()));
        }
        let Some(at) = subscribers.iter().position(|s| s.url == url) else {
            return Err(DtmError::Other("no such an url ".into()));
        };
        subscribers.remove(at);
        self.save_topic(topic, &subscribers, version).await
    }

    /// A topic's subscribers and the version they were read at.
    async fn load_topic(&self, topic: &str) -> DtmResult<Option<(Vec<Subscriber>, i64)>> {
        match self.store.find_kv(TOPICS_CATEGORY, topic).await?.first() {
            Some(entry) => Ok(Some((parse(&entry.v)?, entry.version))),
            None => Ok(None),
        }
    }

    /// Writes a topic's subscribers if it is still at `version` (`storage: NotFound` if not).
    async fn save_topic(
        &self,
        topic: &str,
        subscribers: &[Subscriber],
        version: i64,
    ) -> DtmResult<()> {
        let value = to_json(subscribers);
        Ok(self
            .store
            .update_kv(TOPICS_CATEGORY, topic, &value, version, self.now())
            .await?)
    }

    pub async fn delete_topic(&self, topic: &str) -> DtmResult<()> {
        Ok(self.store.delete_kv(TOPICS_CATEGORY, topic).await?)
    }

    /// The subscriber URLs of a topic, in subscription order; `topic not found` if none.
    pub(super) async fn topic_subscribers(&self, topic: &str) -> DtmResult<Vec<String>> {
        let subscribers = self
            .load_topic(topic)
            .await?
            .map(|(s, _)| s)
            .unwrap_or_default();
        if subscribers.is_empty() {
            return Err(DtmError::Other("topic not found".into()));
        }
        Ok(subscribers.into_iter().map(|s| s.url).collect())
    }
}
