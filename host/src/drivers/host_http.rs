//! The `send-http` capability: HTTP requests a driver asks the host to send, allowed only to
//! the registry addresses the configuration names.

use std::time::Duration;

use crate::drivers::wasm::bindings::dtm::driver::types::{HttpRequest, HttpResponse};

/// The largest response a driver gets; a registry answer beyond it is refused, so a
/// misbehaving registry cannot balloon the host's memory (the driver's own is capped anyway).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The methods registries' HTTP APIs use (etcd's gateway, Consul, Nacos, Polaris).
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];

/// Headers the host sets itself or that steer the connection or a proxy: a driver setting
/// `Host` could reach any site behind a shared ingress or virtual-hosting proxy on an allowed
/// address.
const HOST_HEADERS: [&str; 12] = [
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "forwarded",
    "via",
    "max-forwards",
];

/// Whether a driver may set header `name` (case-insensitive).
fn driver_may_set(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !HOST_HEADERS.contains(&name.as_str())
        && !name.starts_with("proxy-")
        && !name.starts_with("x-forwarded-")
}

/// Which `host:port` destinations a driver may reach.
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    allowed: Vec<String>,
    timeout: Duration,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host:port` of an address given as `host:port` or as a URL (`etcd://user@host:2379/key`).
fn authority(address: &str) -> Option<String> {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    (!host_port.is_empty()).then(|| host_port.to_ascii_lowercase())
}

/// Why a driver's request was refused or failed; the text is what the driver receives.
#[derive(Debug, thiserror::Error)]
pub enum SendHttpError {
    #[error("bad url '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("'{0}' is not an http(s) URL with a host")]
    NotHttp(String),
    #[error("send-http refused: {destination} is not a configured registry address (allowed: {allowed})")]
    NotAllowed {
        destination: String,
        allowed: String,
    },
    #[error("send-http refused: method '{0}' (allowed: {allowed})", allowed = METHODS.join(", "))]
    Method(String),
    #[error("send-http refused: header '{0}' is the host's to set")]
    Header(String),
    #[error("send-http needs the coordinator's runtime")]
    NoRuntime,
    #[error("request failed: {0}")]
    Request(reqwest::Error),
    #[error("reading the response failed: {0}")]
    Read(reqwest::Error),
    #[error("the response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

impl HttpPolicy {
    /// Allows the hosts of `addresses` (`host:port`, or URLs such as `MicroService.Target`;
    /// a comma-separated host list counts each host).
    pub fn new<'a>(addresses: impl IntoIterator<Item = &'a str>, timeout: Duration) -> Self {
        let mut allowed = Vec::new();
        for address in addresses {
            if let Some(hosts) = authority(address) {
                allowed.extend(
                    hosts
                        .split(',')
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        Self { allowed, timeout }
    }

    /// The request's URL if its destination is allowed, else why not.
    pub fn check(&self, url: &str) -> Result<reqwest::Url, SendHttpError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| SendHttpError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let port = parsed.port().or_else(|| default_port(parsed.scheme()));
        let (Some(host), Some(port)) = (parsed.host_str(), port) else {
            return Err(SendHttpError::NotHttp(url.to_owned()));
        };
        let destination = format!("{}:{port}", host.to_ascii_lowercase());
        if self.allowed.contains(&destination) {
            Ok(parsed)
        } else {
            Err(SendHttpError::NotAllowed {
                destination,
                allowed: if self.allowed.is_empty() {
                    "none".to_owned()
                } else {
                    self.allowed.join(", ")
                },
            })
        }
    }

    /// The client drivers' requests go out on. It follows no redirect: the allow-list is
    /// checked on the URL a driver names, and a registry's 3xx would lead anywhere, so the
    /// driver gets the 3xx itself.
    pub fn client() -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }

    /// Sends an allowed request, waiting for it on the current (blocking) thread.
    pub fn send(
        &self,
        client: &reqwest::Client,
        request: HttpRequest,
    ) -> Result<HttpResponse, SendHttpError> {
        let url = self.check(&request.url)?;
        let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
            Ok(method) if METHODS.contains(&request.method.as_str()) => method,
            _ => return Err(SendHttpError::Method(request.method)),
        };
        if let Some((name, _)) = request.headers.iter().find(|(n, _)| !driver_may_set(n)) {
            return Err(SendHttpError::Header(name.clone()));
        }
        let mut builder = client
            .request(method, url)
            .timeout(self.timeout)
            .body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| SendHttpError::NoRuntime)?;
        handle.block_on(async move {
            let mut response = builder.send().await.map_err(SendHttpError::Request)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(SendHttpError::Read)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(SendHttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, url: String, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            url,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    /// Serves `app` on a free loopback port; its `host:port`.
    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redirect_is_handed_to_the_driver_not_followed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reached = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        let elsewhere = serve(axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "secret" }
        }))
        .await;
        let target = format!("http://{elsewhere}/internal");
        let registry = serve(axum::Router::new().fallback(move || {
            let target = target.clone();
            async move {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, target)],
                )
            }
        }))
        .await;
        let policy = HttpPolicy::new([registry.as_str()], Duration::from_secs(2));
        let client = HttpPolicy::client().unwrap();
        let url = format!("http://{registry}/v3/kv/range");
        let answer =
            tokio::task::spawn_blocking(move || policy.send(&client, request("POST", url, &[])))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(answer.status, 307);
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }

    #[test]
    fn host_connection_and_proxy_headers_and_odd_methods_are_refused() {
        let policy = HttpPolicy::new(["127.0.0.1:2379"], Duration::from_secs(1));
        let client = HttpPolicy::client().unwrap();
        let url = || "http://127.0.0.1:2379/v3/kv/range".to_owned();
        for header in [
            "Host",
            "connection",
            "Transfer-Encoding",
            "Proxy-Authorization",
            "X-Forwarded-Host",
            "Forwarded",
        ] {
            let refused = policy
                .send(
                    &client,
                    request("GET", url(), &[(header, "internal.example")]),
                )
                .unwrap_err();
            assert!(
                matches!(&refused, SendHttpError::Header(name) if name == header),
                "{header}: {refused}"
            );
        }
        for method in ["CONNECT", "TRACE", "OPTIONS", "get", "BREW"] {
            let refused = policy
                .send(&client, request(method, url(), &[]))
                .unwrap_err();
            assert!(
                matches!(&refused, SendHttpError::Method(m) if m == method),
                "{method}: {refused}"
            );
        }
        assert!(driver_may_set("Authorization") && driver_may_set("content-type"));
    }

    #[test]
    fn only_configured_registries_are_allowed() {
        let policy = HttpPolicy::new(
            [
                "etcd://root:pw@127.0.0.1:2379/dtmservice",
                "nacos.local:8848",
                "h1:1,h2:2",
            ],
            Duration::from_secs(1),
        );
        assert!(policy.check("http://127.0.0.1:2379/v3/kv/range").is_ok());
        assert!(policy
            .check("http://NACOS.local:8848/nacos/v1/ns/instance")
            .is_ok());
        assert!(policy.check("http://h2:2/x").is_ok());
        assert!(policy
            .check("http://127.0.0.1:2380/v3")
            .unwrap_err()
            .to_string()
            .contains("not a configured registry"));
        assert!(policy.check("http://example.com/").is_err());
        assert!(policy.check("file:///etc/passwd").is_err());
        assert!(HttpPolicy::default()
            .check("http://127.0.0.1:2379/")
            .unwrap_err()
            .to_string()
            .contains("none"));
    }
}
