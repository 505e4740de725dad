//! Plain HTTP branch calls (docs/api.md §4.2) and the classification of their responses (§3.4).
//!
//! Branch calls go out on hyper's pooled client directly: the request is built from the URL
//! string the call already has, with no general-purpose client layers on top (URL re-parsing,
//! per-request client clones, a redirect layer on every call); a redirect is followed here only
//! when a branch answers with one.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION, PROXY_AUTHORIZATION,
    USER_AGENT,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{json, Value};

use super::proxy::{ProxyConnector, ProxyRules};
use super::{BranchCall, CallError, CallResult, ClientError};
use crate::model::TransType;
use crate::protocol::jsonrpc::{FAILURE_CODE, ONGOING_CODE};

/// How much of a branch's answer is read (and may end up in a rollback reason).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Redirects followed for one call, as dtm's HTTP client (Go's) follows them.
pub(super) const MAX_REDIRECTS: usize = 10;

type Connector = hyper_rustls::HttpsConnector<ProxyConnector>;

#[derive(Clone)]
pub struct HttpCaller {
    client: Client<Connector, Full<Bytes>>,
    proxies: Option<Arc<ProxyRules>>,
}

impl HttpCaller {
    /// A caller that follows the proxy environment variables (see [`ProxyRules::from_env`]);
    /// an error when one of them names no usable proxy.
    pub fn new() -> Result<Self, ClientError> {
        Self::with_proxies(ProxyRules::from_env()?)
    }

    /// A caller whose calls go through `proxies` (`None`: every call goes direct).
    pub fn with_proxies(proxies: Option<ProxyRules>) -> Result<Self, ClientError> {
        let proxies = proxies.map(Arc::new);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ClientError::Branches)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::new(http, proxies.clone()));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client, proxies })
    }

    pub async fn call(&self, call: &BranchCall) -> CallResult {
        let url = with_dtm_params(call);
        // dtm sends GET for an empty body, except to xa branches; a workflow callback is
        // always POST here (dtm's GET for empty workflow input is a quirk).
        let post =
            !call.body.is_empty() || matches!(call.trans_type, TransType::Xa | TransType::Workflow);
        let method = if post { Method::POST } else { Method::GET };
        match self
            .send(method, &url, Bytes::from(call.body.clone()), call)
            .await
        {
            Ok((status, body)) => classify(status, &body),
            Err(e) => e.into(),
        }
    }

    /// A JSON-RPC branch (docs/api.md §4.6): POST to the URL as stored, method from its `method`
    /// parameter, params = the payload object plus gid, trans_type, branch_id and op.
    pub async fn call_json_rpc(&self, call: &BranchCall) -> CallResult {
        match self.try_json_rpc(call).await {
            Ok(result) => result,
            Err(e) => e.into(),
        }
    }

    async fn try_json_rpc(&self, call: &BranchCall) -> Result<CallResult, CallError> {
        let url = reqwest::Url::parse(&call.url).map_err(|e| CallError::BadUrl {
            url: call.url.clone(),
            reason: e.to_string(),
        })?;
        let method = url
            .query_pairs()
            .find(|(k, _)| k == "method")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let mut params = match serde_json::from_slice::<Value>(&call.body) {
            Ok(Value::Object(params)) => params,
            _ if call.body.is_empty() => serde_json::Map::new(),
            _ => return Err(CallError::JsonRpcPayload),
        };
        for (key, value) in [
            ("gid", call.gid.as_str()),
            ("trans_type", call.trans_type.as_str()),
            ("branch_id", call.branch_id.as_str()),
            ("op", call.op.as_str()),
        ] {
            params.insert(key.into(), value.into());
        }
        let envelope = json!({"jsonrpc": "2.0", "id": crate::gid::new_gid(), "method": method, "params": params});
        let (status, body) = self
            .send(
                Method::POST,
                url.as_str(),
                envelope.to_string().into(),
                call,
            )
            .await?;
        Ok(match classify(status, &body) {
            CallResult::Success => classify_json_rpc(&body),
            other => other,
        })
    }

    /// Sends with dtm's headers, follows redirects, and reads the start of the answer, all
    /// within the call's timeout.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        call: &BranchCall,
    ) -> Result<(u16, String), CallError> {
        let uri = parse_uri(url)?;
        match tokio::time::timeout(call.timeout, self.follow(method, uri, body, call)).await {
            Ok(answer) => answer,
            Err(_) => Err(CallError::TimedOut {
                url: url.to_owned(),
                after: call.timeout,
            }),
        }
    }

    /// One request of a branch call: dtm's headers, and the proxy's credentials if it goes
    /// through one.
    fn branch_request(
        &self,
        method: &Method,
        uri: &Uri,
        body: &Bytes,
        call: &BranchCall,
    ) -> Result<Request<Full<Bytes>>, CallError> {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = branch_headers(call)?;
        if let Some(auth) = self.proxies.as_ref().and_then(|p| p.authorization_for(uri)) {
            request.headers_mut().insert(PROXY_AUTHORIZATION, auth);
        }
        Ok(request)
    }

    async fn follow(
        &self,
        mut method: Method,
        mut uri: Uri,
        mut body: Bytes,
        call: &BranchCall,
    ) -> Result<(u16, String), CallError> {
        for _ in 0..=MAX_REDIRECTS {
            let request = self.branch_request(&method, &uri, &body, call)?;
            let response = match self.client.request(request).await {
                Err(error) if closed_before_answer(&error) => {
                    let again = self.branch_request(&method, &uri, &body, call)?;
                    self.client.request(again).await
                }
                sent => sent,
            }
            .map_err(|error| CallError::Send {
                url: uri.to_string(),
                error,
            })?;
            let status = response.status();
            let next = match status {
                StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER => {
                    // As Go's client: the next request is a GET without the body.
                    if method != Method::HEAD {
                        method = Method::GET;
                    }
                    body = Bytes::new();
                    redirect_target(&uri, response.headers())
                }
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => {
                    redirect_target(&uri, response.headers())
                }
                _ => None,
            };
            match next {
                Some(next) => uri = next,
                None => return read_answer(&uri, response).await,
            }
        }
        Err(CallError::TooManyRedirects {
            last: uri.to_string(),
        })
    }
}

/// The URL as a request target. A URL the strict parser refuses (a space, say) is normalised
/// (percent-encoded) the way a WHATWG URL parser does, as the client used before did.
fn parse_uri(url: &str) -> Result<Uri, CallError> {
    url.parse::<Uri>()
        .or_else(|_| {
            let normalised = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
            normalised
                .as_str()
                .parse::<Uri>()
                .map_err(|e| e.to_string())
        })
        .map_err(|reason| CallError::BadUrl {
            url: url.to_owned(),
            reason,
        })
}

/// Where a redirect points, resolved against the URL that answered it.
fn redirect_target(base: &Uri, headers: &HeaderMap) -> Option<Uri> {
    let location = headers.get(LOCATION)?.to_str().ok()?;
    let base = reqwest::Url::parse(&base.to_string()).ok()?;
    base.join(location).ok()?.as_str().parse().ok()
}

/// dtm's headers: Content-Type, then the branch headers, a same-named one replacing it.
fn branch_headers(call: &BranchCall) -> Result<HeaderMap, CallError> {
    let mut headers = HeaderMap::with_capacity(3 + call.headers.len());
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("dtm-host/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in call.headers.iter() {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => return Err(CallError::Header(name.clone())),
        }
    }
    Ok(headers)
}

/// Whether a request failed because its connection closed before any answer came: a pooled
/// connection that the peer had closed as the request went out (an idle timeout; a proxy such as
/// tinyproxy that serves one request per connection without saying so). Such a call is sent
/// once more at once: branches are idempotent (dtm calls a branch again until it answers), and
/// waiting `RetryInterval` because of a connection the peer had dropped helps no one.
fn closed_before_answer(error: &hyper_util::client::legacy::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<hyper::Error>())
        .is_some_and(hyper::Error::is_incomplete_message)
}

/// The status and the start of the answer: enough to classify it and to report why.
async fn read_answer(
    uri: &Uri,
    response: http::Response<hyper::body::Incoming>,
) -> Result<(u16, String), CallError> {
    let status = response.status().as_u16();
    let mut incoming = response.into_body();
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_BYTES {
        match incoming.frame().await {
            Some(Ok(frame)) => {
                if let Some(chunk) = frame.data_ref() {
                    body.extend_from_slice(
                        &chunk[..chunk.len().min(MAX_ANSWER_BYTES - body.len())],
                    );
                }
            }
            None => break,
            Some(Err(error)) => {
                return Err(CallError::Read {
                    url: uri.to_string(),
                    status,
                    error,
                })
            }
        }
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The `error` member of a JSON-RPC answer: -32901 is FAILURE, -32902 ONGOING (the codes dtm
/// means; its own comparison never matches), any other error is retried.
fn classify_json_rpc(body: &str) -> CallResult {
    let Ok(answer) = serde_json::from_str::<Value>(body) else {
        return CallResult::Error(format!("JSON-RPC answer is not JSON: {body}"));
    };
    match &answer["error"] {
        Value::Null => CallResult::Success,
        error => match error["code"].as_i64() {
            Some(FAILURE_CODE) => CallResult::Failure(format!("{body}. FAILURE")),
            Some(ONGOING_CODE) => CallResult::Ongoing(body.to_owned()),
            _ => CallResult::Error(format!("JSON-RPC error: {error}")),
        },
    }
}

/// The branch URL plus the four query parameters every RM's barrier relies on.
fn with_dtm_params(call: &BranchCall) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("branch_id", &call.branch_id)
        .append_pair("gid", &call.gid)
        .append_pair("op", &call.op)
        .append_pair("trans_type", call.trans_type.as_str())
        .finish();
    let joiner = if call.url.contains('?') { '&' } else { '?' };
    format!("{}{joiner}{query}", call.url)
}

/// dtm's rules, in order: 425 or `ONGOING` in the body; 409 or `FAILURE` in the body; any
/// status but 200 is an error; otherwise success.
pub fn classify(status: u16, body: &str) -> CallResult {
    if status == 425 || body.contains("ONGOING") {
        CallResult::Ongoing(body.to_owned())
    } else if status == 409 || body.contains("FAILURE") {
        CallResult::Failure(format!("{body} FAILURE"))
    } else if status != 200 {
        CallResult::Error(format!("http status {status}: {body}"))
    } else {
        CallResult::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn classification_follows_dtm_order() {
        assert_eq!(classify(200, ""), CallResult::Success);
        assert_eq!(
            classify(200, "{\"dtm_result\":\"SUCCESS\"}"),
            CallResult::Success
        );
        assert!(matches!(classify(425, ""), CallResult::Ongoing(_)));
        assert!(matches!(
            classify(200, "{\"dtm_result\":\"ONGOING\"}"),
            CallResult::Ongoing(_)
        ));
        assert!(matches!(
            classify(409, "FAILURE ONGOING"),
            CallResult::Ongoing(_)
        ));
        assert!(matches!(classify(409, "no"), CallResult::Failure(_)));
        assert!(matches!(
            classify(200, "{\"dtm_result\":\"FAILURE\"}"),
            CallResult::Failure(_)
        ));
        assert!(matches!(classify(500, "x FAILURE"), CallResult::Failure(_)));
        assert!(matches!(classify(201, ""), CallResult::Error(_)));
        assert!(matches!(classify(204, ""), CallResult::Error(_)));
        assert!(matches!(classify(500, "boom"), CallResult::Error(_)));
        assert!(
            matches!(classify(200, "failure"), CallResult::Success),
            "case-sensitive"
        );
    }

    #[test]
    fn json_rpc_error_codes() {
        assert_eq!(
            classify_json_rpc(r#"{"result":{},"error":null}"#),
            CallResult::Success
        );
        assert!(matches!(
            classify_json_rpc(r#"{"error":{"code":-32901,"message":"no"}}"#),
            CallResult::Failure(_)
        ));
        assert!(matches!(
            classify_json_rpc(r#"{"error":{"code":-32902,"message":"wait"}}"#),
            CallResult::Ongoing(_)
        ));
        assert!(matches!(
            classify_json_rpc(r#"{"error":{"code":-32603,"message":"x"}}"#),
            CallResult::Error(_)
        ));
        assert!(matches!(
            classify_json_rpc("not json"),
            CallResult::Error(_)
        ));
    }

    /// What a branch received: method, path and query, the headers named, the body.
    type Seen = Arc<std::sync::Mutex<Vec<(String, String, Vec<String>, String)>>>;

    /// A branch server on loopback: `/moved` answers 302 and `/kept` 307 towards `/busi`,
    /// `/loop` redirects to itself, `/slow` answers after 2 s, anything else records the
    /// request and answers SUCCESS.
    async fn branch_server() -> (String, Seen) {
        use axum::http::{header, Request, StatusCode};
        use axum::response::IntoResponse;
        let seen = Seen::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
            let record = record.clone();
            async move {
                let target = request.uri().to_string();
                let redirect = |status, to: &str| {
                    (status, [(header::LOCATION, to.to_owned())]).into_response()
                };
                match request.uri().path() {
                    "/moved" => return redirect(StatusCode::FOUND, "/busi?from=moved"),
                    "/kept" => return redirect(StatusCode::TEMPORARY_REDIRECT, "busi"),
                    "/loop" => return redirect(StatusCode::FOUND, "/loop"),
                    "/slow" => tokio::time::sleep(Duration::from_secs(2)).await,
                    _ => {}
                }
                let method = request.method().to_string();
                let headers = ["user-agent", "content-type", "x-tenant"]
                    .iter()
                    .map(|name| {
                        let value = request.headers().get(*name);
                        value.map_or("", |v| v.to_str().unwrap()).to_owned()
                    })
                    .collect();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let body = String::from_utf8(body.to_vec()).unwrap();
                record.lock().unwrap().push((method, target, headers, body));
                r#"{"dtm_result":"SUCCESS"}"#.into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}"), seen)
    }

    fn branch_call(url: String, body: &str) -> BranchCall {
        BranchCall {
            url,
            body: body.as_bytes().to_vec(),
            gid: "g1".into(),
            trans_type: TransType::Saga,
            branch_id: "01".into(),
            op: "action".into(),
            protocol: crate::model::Protocol::Http,
            headers: Arc::new(BTreeMap::from([
                ("Content-Type".to_owned(), "text/plain".to_owned()),
                ("X-Tenant".to_owned(), "t1".to_owned()),
            ])),
            timeout: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn a_call_carries_dtms_parameters_headers_and_body() {
        let (base, seen) = branch_server().await;
        let caller = HttpCaller::new().unwrap();
        let posted = caller
            .call(&branch_call(format!("{base}/busi"), "{}"))
            .await;
        assert_eq!(posted, CallResult::Success);
        let empty = branch_call(format!("{base}/busi?a=b c"), "");
        assert_eq!(caller.call(&empty).await, CallResult::Success);
        let user_agent = concat!("dtm-host/", env!("CARGO_PKG_VERSION"));
        let headers = vec![user_agent.to_owned(), "text/plain".into(), "t1".into()];
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (
                    "POST".to_owned(),
                    "/busi?branch_id=01&gid=g1&op=action&trans_type=saga".to_owned(),
                    headers.clone(),
                    "{}".to_owned()
                ),
                (
                    "GET".to_owned(),
                    "/busi?a=b%20c&branch_id=01&gid=g1&op=action&trans_type=saga".to_owned(),
                    headers,
                    String::new()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn redirects_are_followed_as_gos_client_follows_them() {
        let (base, seen) = branch_server().await;
        let caller = HttpCaller::new().unwrap();
        for path in ["moved", "kept"] {
            let call = branch_call(format!("{base}/{path}"), "{\"amount\":30}");
            assert_eq!(caller.call(&call).await, CallResult::Success, "{path}");
        }
        let seen: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(method, target, _, body)| (method.clone(), target.clone(), body.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                // 302: the next request is a GET without the body.
                ("GET".into(), "/busi?from=moved".into(), String::new()),
                // 307: the same method and body, to the target resolved against the URL.
                ("POST".into(), "/busi".into(), "{\"amount\":30}".to_owned()),
            ]
        );
        let looping = caller.call(&branch_call(format!("{base}/loop"), "")).await;
        assert!(
            matches!(&looping, CallResult::Error(e) if e.contains("redirected more than 10 times")),
            "{looping:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_or_unreachable_branch_is_an_error_that_says_why() {
        let (base, _) = branch_server().await;
        let caller = HttpCaller::new().unwrap();
        let slow = caller.call(&branch_call(format!("{base}/slow"), "")).await;
        assert!(
            matches!(&slow, CallResult::Error(e) if e.contains("timed out after 500ms")),
            "{slow:?}"
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let refused = caller
            .call(&branch_call(format!("http://{address}/busi"), ""))
            .await;
        assert!(
            matches!(&refused, CallResult::Error(e) if e.contains("Connection refused")),
            "{refused:?}"
        );
    }

    /// A branch server that answers each request with SUCCESS on a kept-alive connection, but
    /// closes the connection on the second request it gets, without answering: a peer that
    /// dropped a pooled connection as the request went out. Returns its address and the count
    /// of requests it got.
    async fn server_dropping_its_second_request() -> (String, Arc<AtomicUsize>) {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let counted = counted.clone();
                // A service error makes hyper close the connection without an answer.
                let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                    let nth = counted.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        match nth {
                            2 => Err("dropped"),
                            _ => Ok(http::Response::new(Full::new(Bytes::from_static(
                                br#"{"dtm_result":"SUCCESS"}"#,
                            )))),
                        }
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service),
                );
            }
        });
        (format!("http://{address}"), requests)
    }

    #[tokio::test]
    async fn a_call_on_a_connection_the_peer_dropped_is_sent_once_more() {
        let (base, requests) = server_dropping_its_second_request().await;
        let caller = HttpCaller::new().unwrap();
        let first = caller.call(&branch_call(format!("{base}/busi"), "")).await;
        assert!(matches!(first, CallResult::Success), "{first:?}");
        // Goes out on the first call's pooled connection, which the server then closes.
        let second = caller.call(&branch_call(format!("{base}/busi"), "")).await;
        assert!(matches!(second, CallResult::Success), "{second:?}");
        assert_eq!(requests.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn query_parameters_are_appended() {
        let mut call = BranchCall {
            url: "http://busi/TransOut".into(),
            body: vec![],
            gid: "g 1".into(),
            trans_type: TransType::Saga,
            branch_id: "01".into(),
            op: "action".into(),
            protocol: crate::model::Protocol::Http,
            headers: Arc::new(BTreeMap::new()),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            with_dtm_params(&call),
            "http://busi/TransOut?branch_id=01&gid=g+1&op=action&trans_type=saga"
        );
        call.url.push_str("?a=b");
        assert!(with_dtm_params(&call).starts_with("http://busi/TransOut?a=b&branch_id=01"));
    }
}
