//! The domain: global transactions, their branch records and options, free of any wire format.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok(Self::$variant),)+ _ => Err(()) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The kind of a global transaction.
    TransType { Saga => "saga", Msg => "msg", Tcc => "tcc", Xa => "xa", Workflow => "workflow" }
);

string_enum!(
    /// Status of a global transaction. `Succeed` and `Failed` are final.
    GlobalStatus {
        Prepared => "prepared",
        Submitted => "submitted",
        Aborting => "aborting",
        Succeed => "succeed",
        Failed => "failed",
    }
);

impl GlobalStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeed | Self::Failed)
    }
}

string_enum!(
    /// How branches of a transaction are called.
    Protocol { Http => "http", Grpc => "grpc", JsonRpc => "json-rpc" }
);

/// Branch statuses the engine writes. Workflow progress may carry other words, kept verbatim.
pub mod branch_status {
    pub const PREPARED: &str = "prepared";
    pub const SUCCEED: &str = "succeed";
    pub const FAILED: &str = "failed";
}

/// Branch ops (workflow ops are free-form strings chosen by the client).
pub mod op {
    pub const ACTION: &str = "action";
    pub const COMPENSATE: &str = "compensate";
    pub const CONFIRM: &str = "confirm";
    pub const CANCEL: &str = "cancel";
    pub const COMMIT: &str = "commit";
    pub const ROLLBACK: &str = "rollback";
    /// The msg check-back ("query prepared") call.
    pub const MSG: &str = "msg";
}

/// Branch id of the msg check-back and of the workflow resume callback.
pub const CHECK_BRANCH_ID: &str = "00";

/// Per-transaction options, stored as the JSON text of the `options` column (dtm's layout).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransOptions {
    #[serde(skip_serializing_if = "is_false")]
    pub wait_result: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout_to_fail: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub request_timeout: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub retry_interval: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub branch_headers: BTreeMap<String, String>,
    pub concurrent: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub retry_limit: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub retry_count: i64,
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl TransOptions {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the stored `options` text; an empty or unreadable value means all defaults.
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// One global transaction record (`trans_global`).
#[derive(Debug, Clone, PartialEq)]
pub struct TransGlobal {
    pub id: u64,
    pub gid: String,
    pub trans_type: TransType,
    pub status: GlobalStatus,
    pub query_prepared: String,
    pub protocol: Protocol,
    pub create_time: Millis,
    pub update_time: Millis,
    pub finish_time: Option<Millis>,
    pub rollback_time: Option<Millis>,
    pub options: TransOptions,
    pub custom_data: String,
    /// Current retry interval in seconds.
    pub next_cron_interval: i64,
    pub next_cron_time: Millis,
    pub owner: String,
    pub ext_data: String,
    pub result: String,
    pub rollback_reason: String,
}

/// One branch record (`trans_branch_op`): one op of one branch.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub id: u64,
    pub gid: String,
    pub url: String,
    pub bin_data: Vec<u8>,
    pub branch_id: String,
    pub op: String,
    pub status: String,
    pub finish_time: Option<Millis>,
    pub create_time: Millis,
    pub update_time: Millis,
}

impl Branch {
    pub fn new(
        gid: &str,
        branch_id: String,
        op: &str,
        url: String,
        bin_data: Vec<u8>,
        now: Millis,
    ) -> Self {
        Self {
            id: 0,
            gid: gid.to_owned(),
            url,
            bin_data,
            branch_id,
            op: op.to_owned(),
            status: branch_status::PREPARED.to_owned(),
            finish_time: None,
            create_time: now,
            update_time: now,
        }
    }

    pub fn is(&self, status: &str) -> bool {
        self.status == status
    }
}

/// One entry of the key-value store (topics live here under category `topics`).
#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    pub id: u64,
    pub cat: String,
    pub k: String,
    pub v: String,
    pub version: i64,
    pub create_time: Millis,
    pub update_time: Millis,
}

/// Filters and cursor of a transaction listing (`/all`).
#[derive(Debug, Clone, Default)]
pub struct ScanFilter {
    pub status: String,
    pub trans_type: String,
    /// Inclusive bounds on create_time, in milliseconds.
    pub create_start: Option<Millis>,
    pub create_end: Option<Millis>,
}
