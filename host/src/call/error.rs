//! Why a branch URL cannot be called or a call could not be made, and why the callers' clients
//! could not be built. The texts are what dtm-host reports (a refused request's message, a
//! retried call's detail, a start-up error), so they stay as they are; causes are part of the
//! text, not a `source` chain, so no reporter prints them twice.

use crate::drivers::DriverError;

/// A branch URL that cannot be called, or a call that could not be made (retried with
/// backoff: see [`CallResult::Error`](super::CallResult::Error)).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A URL without a scheme in a transaction whose branches go over HTTP.
    #[error("branch url '{0}' must start with http:// or https://")]
    NotHttp(String),
    /// The driver's own error, as it gave it (splitting a gRPC URL).
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("driver {driver} found no server in '{url}'")]
    NoServer { driver: String, url: String },
    #[error("'{0}' resolved to no endpoint")]
    NoEndpoint(String),
    #[error("resolving '{server}' failed: {error}")]
    Resolve { server: String, error: DriverError },
    #[error("bad gRPC server '{endpoint}': {error}")]
    BadServer {
        endpoint: String,
        error: http::uri::InvalidUri,
    },
    /// A JSON-RPC branch URL that does not parse (the parser's message in `reason`).
    #[error("bad url '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the payload of a JSON-RPC branch must be a JSON object")]
    JsonRpcPayload,
    #[error("invalid branch header '{0}'")]
    Header(String),
    #[error("http call to {url} failed: {}", with_causes(error))]
    Send {
        url: String,
        error: hyper_util::client::legacy::Error,
    },
    #[error(
        "reading the response (http status {status}) of {url} failed: {}",
        with_causes(error)
    )]
    Read {
        url: String,
        status: u16,
        error: hyper::Error,
    },
    #[error("http call to {url} timed out after {after:?}")]
    TimedOut {
        url: String,
        after: std::time::Duration,
    },
    #[error("http call redirected more than {limit} times, last to {last}", limit = super::http::MAX_REDIRECTS)]
    TooManyRedirects { last: String },
}

/// An HTTP client the callers need could not be built (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client of HTTP and JSON-RPC branch calls.
    #[error("cannot build the HTTP client: {0}")]
    Branches(rustls::Error),
    /// A proxy variable of the environment that names no usable proxy.
    #[error(transparent)]
    Proxy(#[from] super::proxy::ProxySettingError),
    /// The client posting to `AlertWebHook`.
    #[error("alert webhook client: {0}")]
    AlertWebHook(reqwest::Error),
}

/// An error and what caused it, outermost first: hyper's own message names only the stage
/// ("client error (Connect)"), the cause says what went wrong ("Connection refused").
pub(super) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
