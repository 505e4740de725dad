//! The `send-http` capability: HTTP requests a driver asks the host to send, allowed only to
//! the registry addresses the configuration names.

use std::time::Duration;

use crate::drivers::wasm::bindings::dtm::driver::types::{HttpRequest, HttpResponse};

/// The largest response a driver gets; a registry answer beyond it is refused, so a
/// misbehaving registry cannot balloon the host's memory (the driver's own is capped anyway).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

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
    pub fn check(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad url '{url}': {e}"))?;
        let port = parsed.port().or_else(|| default_port(parsed.scheme()));
        let (Some(host), Some(port)) = (parsed.host_str(), port) else {
            return Err(format!("'{url}' is not an http(s) URL with a host"));
        };
        let destination = format!("{}:{port}", host.to_ascii_lowercase());
        if self.allowed.contains(&destination) {
            Ok(parsed)
        } else {
            Err(format!(
                "send-http refused: {destination} is not a configured registry address (allowed: {})",
                if self.allowed.is_empty() { "none".to_owned() } else { self.allowed.join(", ") }
            ))
        }
    }

    /// Sends an allowed request, waiting for it on the current (blocking) thread.
    pub fn send(
        &self,
        client: &reqwest::Client,
        request: HttpRequest,
    ) -> Result<HttpResponse, String> {
        let url = self.check(&request.url)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| format!("bad HTTP method '{}'", request.method))?;
        let mut builder = client
            .request(method, url)
            .timeout(self.timeout)
            .body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "send-http needs the coordinator's runtime".to_owned())?;
        handle.block_on(async move {
            let mut response = builder
                .send()
                .await
                .map_err(|e| format!("request failed: {e}"))?;
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
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| format!("reading the response failed: {e}"))?
            {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "the response is larger than {MAX_RESPONSE_BYTES} bytes"
                    ));
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
            .contains("not a configured registry"));
        assert!(policy.check("http://example.com/").is_err());
        assert!(policy.check("file:///etc/passwd").is_err());
        assert!(HttpPolicy::default()
            .check("http://127.0.0.1:2379/")
            .unwrap_err()
            .contains("none"));
    }
}
