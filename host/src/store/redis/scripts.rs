//! The Lua scripts, one file each under `lua/`: each file's first lines state its KEYS, its ARGV
//! and its answer. Most scripts start with the helpers of `lua/prelude.lua`.

use redis::Script;

use crate::store::StoreError;

/// Helpers every script that writes a transaction starts with.
const PRELUDE: &str = include_str!("lua/prelude.lua");
const CREATE: &str = include_str!("lua/create.lua");
const APPEND: &str = include_str!("lua/append.lua");
const OUTCOMES: &str = include_str!("lua/outcomes.lua");
const CHANGE_STATUS: &str = include_str!("lua/change_status.lua");
const TOUCH: &str = include_str!("lua/touch.lua");
const CLAIM_BUCKET: &str = include_str!("lua/claim_bucket.lua");
const CLAIM_GID: &str = include_str!("lua/claim_gid.lua");
const CLAIM_ONE: &str = include_str!("lua/claim_one.lua");
const RELEASE: &str = include_str!("lua/release.lua");
const SETTLE: &str = include_str!("lua/settle.lua");
const RESET: &str = include_str!("lua/reset.lua");
const KV_CREATE: &str = include_str!("lua/kv_create.lua");
const KV_UPDATE: &str = include_str!("lua/kv_update.lua");
const KV_DELETE: &str = include_str!("lua/kv_delete.lua");

pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) append: Script,
    pub(super) outcomes: Script,
    pub(super) change_status: Script,
    pub(super) touch: Script,
    pub(super) claim_bucket: Script,
    pub(super) claim_gid: Script,
    pub(super) claim_one: Script,
    pub(super) release: Script,
    pub(super) settle: Script,
    pub(super) reset: Script,
    pub(super) kv_create: Script,
    pub(super) kv_update: Script,
    pub(super) kv_delete: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Self {
            create: with_prelude(CREATE),
            append: with_prelude(APPEND),
            outcomes: with_prelude(OUTCOMES),
            change_status: with_prelude(CHANGE_STATUS),
            touch: with_prelude(TOUCH),
            claim_bucket: Script::new(CLAIM_BUCKET),
            claim_gid: with_prelude(CLAIM_GID),
            claim_one: with_prelude(CLAIM_ONE),
            release: Script::new(RELEASE),
            settle: Script::new(SETTLE),
            reset: with_prelude(RESET),
            kv_create: Script::new(KV_CREATE),
            kv_update: Script::new(KV_UPDATE),
            kv_delete: Script::new(KV_DELETE),
        }
    }
}

pub(super) fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// The first word of a script's answer.
pub(super) fn verdict(reply: &[String]) -> &str {
    reply.first().map(String::as_str).unwrap_or("")
}

/// The answer of a script that says `{'ok'}` or `{'notfound'}`.
pub(super) fn ok_or_not_found(script: &str, reply: &[String]) -> Result<(), StoreError> {
    match verdict(reply) {
        "ok" => Ok(()),
        "notfound" => Err(StoreError::NotFound),
        _ => Err(unexpected(script, reply)),
    }
}

pub(super) fn unexpected(script: &str, reply: &[String]) -> StoreError {
    StoreError::Backend(format!(
        "redis: unexpected answer of the {script} script: {reply:?}"
    ))
}
