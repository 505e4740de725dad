//! Which HTTP branch calls go through a proxy, and the connections for them.
//!
//! dtm's HTTP client (Go's) takes its proxies from `HTTP_PROXY` / `HTTPS_PROXY` and its
//! exceptions from `NO_PROXY` (each also in lower case), and never proxies `localhost` or a
//! loopback address; the same rules apply here. Through an `http://` proxy, a plain-HTTP branch
//! is asked of the proxy (absolute-form target, with the proxy's credentials) and an HTTPS
//! branch goes through a CONNECT tunnel; through a `socks5://` or `socks5h://` proxy, both go
//! through a SOCKS5 connection that names the branch's host (the proxy resolves it, as Go's
//! client has it do for both schemes). TLS to an HTTPS branch then runs inside the tunnel as
//! over a direct connection.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The proxy rules read from the environment.
pub struct ProxyRules {
    matcher: Matcher,
}

/// A proxy variable whose value dtm-host cannot use: the start stops with it. The value itself
/// is left out, as it may hold credentials.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the proxy setting {variable}: {reason}")]
pub struct ProxySettingError {
    variable: &'static str,
    reason: &'static str,
}

impl ProxyRules {
    /// The rules in the environment; `None` when neither `HTTP_PROXY` nor `HTTPS_PROXY` (nor
    /// their lower-case forms) names a proxy, or `NO_PROXY` is `*`.
    pub fn from_env() -> Result<Option<Self>, ProxySettingError> {
        // As Go's client: the first of the two names that is set and not empty.
        let var = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|name| {
                    let value = std::env::var(name).ok()?;
                    (!value.is_empty()).then_some((name, value))
                })
                .unwrap_or((names[0], String::new()))
        };
        let rules = Self::new(
            var(["HTTP_PROXY", "http_proxy"]),
            var(["HTTPS_PROXY", "https_proxy"]),
            &var(["NO_PROXY", "no_proxy"]).1,
        )?;
        if let Some(rules) = &rules {
            // The matcher's Debug leaves the proxies' credentials out.
            tracing::info!(proxies = ?rules.matcher, "HTTP branch calls go through proxies");
        }
        Ok(rules)
    }

    /// Rules from the variables' names and values (an empty value names no proxy); `None` when
    /// neither proxy is named, or `no_proxy` is `*`.
    pub fn new(
        http_proxy: (&'static str, String),
        https_proxy: (&'static str, String),
        no_proxy: &str,
    ) -> Result<Option<Self>, ProxySettingError> {
        check_proxy(http_proxy.0, &http_proxy.1)?;
        check_proxy(https_proxy.0, &https_proxy.1)?;
        // `*` exempts every host; the matcher would still proxy IP addresses.
        let everything_exempt = no_proxy.split(',').any(|entry| entry.trim() == "*");
        if (http_proxy.1.is_empty() && https_proxy.1.is_empty()) || everything_exempt {
            return Ok(None);
        }
        let matcher = Matcher::builder()
            .http(http_proxy.1)
            .https(https_proxy.1)
            .no(no_proxy)
            .build();
        Ok(Some(Self { matcher }))
    }

    /// The proxy a call to `target` goes through, if any.
    fn proxy_for(&self, target: &Uri) -> Option<Intercept> {
        if is_loopback(target.host()?) {
            return None;
        }
        self.matcher.intercept(target)
    }

    /// The `Proxy-Authorization` a request to `target` carries: only a plain-HTTP request asked
    /// of an HTTP proxy names the proxy's credentials in its own headers (a tunnel gives them
    /// when it is opened).
    pub fn authorization_for(&self, target: &Uri) -> Option<HeaderValue> {
        if target.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let proxy = self.proxy_for(target)?;
        if proxy.uri().scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        proxy.basic_auth().cloned()
    }
}

/// `localhost` or a loopback address, which Go's client never sends to a proxy.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a proxy value that names no proxy dtm-host can use (Go's client fails every call
/// through such a value), rather than sending the calls direct.
fn check_proxy(variable: &'static str, value: &str) -> Result<(), ProxySettingError> {
    if value.is_empty() {
        return Ok(());
    }
    let refuse = |reason| Err(ProxySettingError { variable, reason });
    let probe = Matcher::builder().all(value).build();
    let Some(proxy) = probe.intercept(&Uri::from_static("http://proxy-check.invalid/")) else {
        return refuse("not a proxy URL (scheme://[user:password@]host[:port])");
    };
    if proxy
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return refuse("an `@` in the proxy's user name or password must be written %40");
    }
    match proxy.uri().scheme_str() {
        Some("http" | "socks5" | "socks5h") => Ok(()),
        _ => refuse("only http://, socks5:// and socks5h:// proxies are supported"),
    }
}

/// Why a connection through a proxy was not made.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("connecting to proxy {proxy}")]
    Connect {
        proxy: Uri,
        #[source]
        source: BoxError,
    },
    #[error("opening a tunnel through proxy {proxy}")]
    Tunnel {
        proxy: Uri,
        #[source]
        source: BoxError,
    },
    #[error("through SOCKS proxy {proxy}")]
    Socks {
        proxy: Uri,
        #[source]
        source: BoxError,
    },
}

/// Opens the TCP connection of a branch call: to the branch, or through its proxy.
#[derive(Clone)]
pub struct ProxyConnector {
    tcp: HttpConnector,
    rules: Option<Arc<ProxyRules>>,
}

impl ProxyConnector {
    pub fn new(tcp: HttpConnector, rules: Option<Arc<ProxyRules>>) -> Self {
        Self { tcp, rules }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = BranchConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<BranchConnection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: Uri) -> Self::Future {
        let proxy = self
            .rules
            .as_ref()
            .and_then(|rules| rules.proxy_for(&target));
        let tcp = self.tcp.clone();
        Box::pin(async move {
            match proxy {
                None => connect_direct(tcp, target).await,
                Some(proxy) => connect_through(tcp, target, proxy).await,
            }
        })
    }
}

async fn connect_direct(mut tcp: HttpConnector, target: Uri) -> Result<BranchConnection, BoxError> {
    Ok(BranchConnection::direct(tcp.call(target).await?))
}

async fn connect_through(
    mut tcp: HttpConnector,
    target: Uri,
    proxy: Intercept,
) -> Result<BranchConnection, BoxError> {
    let proxy_uri = proxy.uri().clone();
    // The proxy's scheme is http, socks5 or socks5h (`check_proxy`).
    let http_proxy = proxy_uri.scheme() == Some(&Scheme::HTTP);
    let connection = match (http_proxy, target.scheme() == Some(&Scheme::HTTPS)) {
        (true, false) => {
            let io = tcp.call(proxy_uri.clone()).await;
            let io = io.map_err(|e| ProxyError::Connect {
                proxy: proxy_uri,
                source: e.into(),
            })?;
            BranchConnection {
                io,
                via_http_proxy: true,
            }
        }
        (true, true) => {
            let mut tunnel = Tunnel::new(proxy_uri.clone(), tcp);
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let io = tunnel.call(target).await.map_err(|e| ProxyError::Tunnel {
                proxy: proxy_uri,
                source: e.into(),
            })?;
            BranchConnection::direct(io)
        }
        (false, _) => {
            // A SOCKS proxy named without a port listens on 1080 (Go's client says so too).
            let socks_uri = with_port(proxy_uri.clone(), 1080)?;
            let mut socks = SocksV5::new(socks_uri, tcp).local_dns(false);
            if let Some((user, password)) = proxy.raw_auth() {
                socks = socks.with_auth(user.to_owned(), password.to_owned());
            }
            let target = with_port(target.clone(), default_port(&target))?;
            let io = socks.call(target).await.map_err(|e| ProxyError::Socks {
                proxy: proxy_uri,
                source: e.into(),
            })?;
            BranchConnection::direct(io)
        }
    };
    Ok(connection)
}

/// The port of a branch URL's scheme.
fn default_port(target: &Uri) -> u16 {
    if target.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    }
}

/// `uri` with its port spelled out (`port` when it has none): the SOCKS connector takes a
/// missing port for 443, and the TCP connector for 80.
fn with_port(uri: Uri, port: u16) -> Result<Uri, BoxError> {
    if uri.port().is_some() {
        return Ok(uri);
    }
    let host = uri.host().unwrap_or_default();
    let authority: Authority = format!("{host}:{port}").parse()?;
    let mut parts = uri.into_parts();
    parts.authority = Some(authority);
    Ok(Uri::from_parts(parts)?)
}

/// A branch call's TCP connection, saying whether requests on it go to an HTTP proxy (which
/// takes them with absolute-form targets).
pub struct BranchConnection {
    io: TokioIo<TcpStream>,
    via_http_proxy: bool,
}

impl BranchConnection {
    /// A connection whose requests go as to the branch itself (directly, or through a tunnel).
    fn direct(io: TokioIo<TcpStream>) -> Self {
        Self {
            io,
            via_http_proxy: false,
        }
    }
}

impl Connection for BranchConnection {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.via_http_proxy)
    }
}

impl Read for BranchConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for BranchConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Mutex;
    use std::time::Duration;

    use axum::extract::ConnectInfo;
    use test_servers::{non_loopback_address, ForwardProxy, ProxyKind};
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::call::http::HttpCaller;
    use crate::call::{BranchCall, CallResult};
    use crate::model::{Protocol, TransType};

    /// What a branch saw of one request: where it came from, its `Via` header, whether it
    /// carried a `Proxy-Authorization`.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        peer: IpAddr,
        via: String,
        proxy_authorization: bool,
    }

    /// A branch on `ip` that records each request and answers SUCCESS; its base URL.
    async fn branch_on(ip: IpAddr) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: http::HeaderMap| {
                let record = record.clone();
                async move {
                    let via = headers.get("via").map_or("", |v| v.to_str().unwrap());
                    record.lock().unwrap().push(Seen {
                        peer: peer.ip(),
                        via: via.to_owned(),
                        proxy_authorization: headers.contains_key("proxy-authorization"),
                    });
                    r#"{"dtm_result":"SUCCESS"}"#
                }
            },
        );
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        (format!("http://{address}"), seen)
    }

    fn call(url: String) -> BranchCall {
        BranchCall {
            url,
            body: b"{}".to_vec(),
            gid: "g1".into(),
            trans_type: TransType::Saga,
            branch_id: "01".into(),
            op: "action".into(),
            protocol: Protocol::Http,
            headers: Arc::new(BTreeMap::new()),
            timeout: Duration::from_secs(5),
        }
    }

    fn rules(
        http_proxy: &str,
        https_proxy: &str,
        no_proxy: &str,
    ) -> Result<Option<ProxyRules>, ProxySettingError> {
        ProxyRules::new(
            ("HTTP_PROXY", http_proxy.to_owned()),
            ("HTTPS_PROXY", https_proxy.to_owned()),
            no_proxy,
        )
    }

    fn caller(http_proxy: &str, https_proxy: &str, no_proxy: &str) -> HttpCaller {
        HttpCaller::with_proxies(rules(http_proxy, https_proxy, no_proxy).unwrap()).unwrap()
    }

    /// One call through `http_proxy` to a fresh branch on the machine's non-loopback address:
    /// its result, what the branch saw, and the branch's base URL.
    async fn call_through(http_proxy: &str) -> (CallResult, Vec<Seen>, String) {
        let (base, seen) = branch_on(non_loopback_address()).await;
        let result = caller(http_proxy, "", "")
            .call(&call(format!("{base}/busi")))
            .await;
        let seen = seen.lock().unwrap().clone();
        (result, seen, base)
    }

    #[tokio::test]
    async fn plain_http_branches_are_asked_of_an_http_proxy_with_its_credentials() {
        let Some(proxy) = ForwardProxy::start(ProxyKind::Http, Some(("alice", "s3cret"))) else {
            return;
        };
        let (result, seen, base) = call_through(&proxy.url()).await;
        assert_eq!(result, CallResult::Success, "{}", proxy.log());
        assert_eq!(seen.len(), 1);
        assert!(seen[0].via.contains("tinyproxy"), "{seen:?}");
        assert!(
            proxy
                .log()
                .contains(&format!("POST {base}/busi?branch_id=01")),
            "{}",
            proxy.log()
        );
        let (refused, _, _) = call_through(&proxy.url().replace("s3cret", "guess")).await;
        // tinyproxy refuses wrong credentials with 401 (and may hang up before its body).
        assert!(
            matches!(&refused, CallResult::Error(e) if e.contains("http status 401")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn loopback_and_no_proxy_branches_are_called_directly() {
        let Some(proxy) = ForwardProxy::start(ProxyKind::Http, Some(("alice", "s3cret"))) else {
            return;
        };
        let (local, seen_locally) = branch_on(IpAddr::from([127, 0, 0, 1])).await;
        let (remote, seen_remotely) = branch_on(non_loopback_address()).await;
        let host = remote.trim_start_matches("http://");
        let host = host.split(':').next().unwrap();
        let caller = caller(&proxy.url(), &proxy.url(), &format!("example.org, {host}"));
        let via_localhost = local.replace("127.0.0.1", "localhost");
        for url in [&local, &via_localhost, &remote] {
            let result = caller.call(&call(format!("{url}/busi"))).await;
            assert_eq!(result, CallResult::Success, "{url}");
        }
        let seen: Vec<Seen> = [seen_locally, seen_remotely]
            .iter()
            .flat_map(|seen| seen.lock().unwrap().clone())
            .collect();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter()
                .all(|s| s.via.is_empty() && !s.proxy_authorization),
            "{seen:?}"
        );
        assert!(!proxy.log().contains("busi"), "{}", proxy.log());
    }

    #[tokio::test]
    async fn https_branches_go_through_a_connect_tunnel() {
        let Some(proxy) = ForwardProxy::start(ProxyKind::Http, Some(("alice", "s3cret"))) else {
            return;
        };
        // Not a TLS server: it keeps what arrives first and hangs up, so the call fails after
        // its TLS handshake has started inside the tunnel.
        let listener = tokio::net::TcpListener::bind((non_loopback_address(), 0))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let first_bytes = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 3];
            stream.read_exact(&mut buffer).await.unwrap();
            buffer
        });
        let result = caller("", &proxy.url(), "")
            .call(&call(format!("https://{address}/busi")))
            .await;
        assert!(matches!(result, CallResult::Error(_)), "{result:?}");
        // A TLS handshake record (0x16) of TLS 1.x (0x03 ..).
        let first_bytes = tokio::time::timeout(Duration::from_secs(10), first_bytes)
            .await
            .expect("no connection reached the branch through the tunnel")
            .unwrap();
        assert_eq!(first_bytes[..2], [0x16, 0x03]);
        assert!(
            proxy.log().contains(&format!("CONNECT {address}")),
            "{}",
            proxy.log()
        );
    }

    #[tokio::test]
    async fn socks5_proxies_carry_branch_calls() {
        let Some(proxy) = ForwardProxy::start(ProxyKind::Socks5, Some(("bob", "pa55"))) else {
            return;
        };
        let (result, seen, _) = call_through(&proxy.url()).await;
        assert_eq!(result, CallResult::Success);
        // The proxy connects from 127.0.0.1; a direct call would come from the branch's own
        // address.
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].peer, IpAddr::from([127, 0, 0, 1]), "{seen:?}");
        let (refused, _, _) = call_through(&proxy.url().replace("pa55", "guess")).await;
        assert!(
            matches!(&refused, CallResult::Error(e) if e.contains("through SOCKS proxy socks5://127.0.0.1")),
            "{refused:?}"
        );
    }

    #[test]
    fn proxy_values_that_name_no_usable_proxy_stop_the_start() {
        let refused = |http_proxy: &str, https_proxy: &str| match rules(http_proxy, https_proxy, "")
        {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{http_proxy:?} {https_proxy:?} accepted"),
        };
        assert_eq!(
            refused("", "https://127.0.0.1:3128"),
            "cannot use the proxy setting HTTPS_PROXY: only http://, socks5:// and socks5h:// proxies are supported"
        );
        assert_eq!(
            refused("socks4://127.0.0.1:1080", ""),
            "cannot use the proxy setting HTTP_PROXY: only http://, socks5:// and socks5h:// proxies are supported"
        );
        assert_eq!(
            refused("not a url", ""),
            "cannot use the proxy setting HTTP_PROXY: not a proxy URL (scheme://[user:password@]host[:port])"
        );
        // The message leaves the value (and its password) out.
        assert_eq!(
            refused("http://bob:p@ss@127.0.0.1:3128", ""),
            "cannot use the proxy setting HTTP_PROXY: an `@` in the proxy's user name or password must be written %40"
        );
        for usable in [
            "127.0.0.1:3128",
            "http://bob:p%40ss@proxy",
            "socks5h://proxy:1080",
        ] {
            assert!(rules(usable, "", "").unwrap().is_some(), "{usable}");
        }
    }

    #[test]
    fn without_a_proxy_named_or_with_every_host_exempt_there_are_no_rules() {
        assert!(rules("", "", "example.org").unwrap().is_none());
        assert!(rules("", "http://127.0.0.1:1", "").unwrap().is_some());
        // `*` exempts IP addresses too, as in Go's client.
        assert!(rules("http://127.0.0.1:1", "", "example.org, *")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_socks_proxy_without_a_port_is_dialled_on_1080() {
        let proxy = Uri::from_static("socks5://proxy/");
        assert_eq!(with_port(proxy, 1080).unwrap(), "socks5://proxy:1080/");
        let branch = Uri::from_static("http://[::1]/busi");
        let port = default_port(&branch);
        assert_eq!(with_port(branch, port).unwrap(), "http://[::1]:80/busi");
    }
}
