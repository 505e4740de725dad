//! etcd through its v3 JSON gateway (docs/drivers.md §5.1): every call is a `POST` of a JSON body
//! under `/v3/`, keys and values travel as standard base64, 64-bit integers (lease IDs, TTLs)
//! come back as decimal strings.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sdk::Host;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::send_json;

/// User and password from a target's query (`?user=root&password=secret`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// A client of one etcd cluster: requests go to the first endpoint that answers.
pub struct Etcd<'h> {
    host: &'h dyn Host,
    endpoints: Vec<String>,
    token: Option<String>,
}

/// The end of the key range holding every key that starts with `prefix`: the prefix with its
/// last byte incremented after dropping trailing 0xFF bytes; a prefix with no byte left to
/// increment (empty or all 0xFF) gets `[0]`, which etcd reads as "to the end of the keyspace".
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A 64-bit integer the gateway sent as a decimal string (or, from other gateways, a number);
/// absent means zero, as protobuf's JSON mapping leaves zero values out.
fn int64_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("0".into()),
        Value::String(text) if text.parse::<i64>().is_ok() => Some(text.clone()),
        Value::Number(number) if number.is_i64() => Some(number.to_string()),
        _ => None,
    }
}

fn decode(field: &Value) -> Result<String, String> {
    let encoded = field.as_str().unwrap_or_default();
    let bytes = BASE64
        .decode(encoded)
        .map_err(|e| format!("etcd sent a key or value that is not base64 ({e}): {encoded}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// etcd's own words from an error body: `{"error": …, "message": …, "code": N}` (older
/// gateways capitalise the keys, a streamed call nests them under `error`).
fn error_text(body: &Value) -> Option<String> {
    let error = body.get("error").or_else(|| body.get("Error"))?;
    let text = match error {
        Value::String(text) => text.clone(),
        nested => nested
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| nested.to_string(), str::to_owned),
    };
    let code = body
        .get("code")
        .or_else(|| body.get("Code"))
        .or_else(|| error.get("grpc_code"))
        .and_then(Value::as_i64);
    Some(match code {
        Some(code) => format!("{text} (code {code})"),
        None => text,
    })
}

fn lease_not_found(message: &str) -> bool {
    message.contains("requested lease not found")
}

impl<'h> Etcd<'h> {
    /// `hosts` is a comma-separated `host:port` list (empty pieces dropped); with credentials
    /// it authenticates first and sends the token on every call.
    pub fn connect(
        host: &'h dyn Host,
        hosts: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Self, String> {
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|piece| !piece.is_empty())
            .map(|piece| {
                if piece.starts_with("http://") || piece.starts_with("https://") {
                    piece.trim_end_matches('/').to_owned()
                } else {
                    format!("http://{piece}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            return Err(format!("etcd: no endpoint in '{hosts}'"));
        }
        let mut etcd = Self {
            host,
            endpoints,
            token: None,
        };
        if let Some(credentials) = credentials {
            let answer = etcd.call(
                "auth/authenticate",
                &json!({"name": credentials.user, "password": credentials.password}),
            )?;
            let token = answer["token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    format!(
                        "etcd: authenticating as '{}' gave no token: {answer}",
                        credentials.user
                    )
                })?;
            etcd.token = Some(token.to_owned());
        }
        Ok(etcd)
    }

    /// POSTs `body` to `/v3/<path>` on the first endpoint that answers at all; an answer that
    /// is an error is final (another member would say the same), an unreachable member is not.
    fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
        let headers: Vec<(String, String)> = self
            .token
            .iter()
            .map(|token| ("authorization".to_owned(), token.clone()))
            .collect();
        let mut unreachable = Vec::new();
        for endpoint in &self.endpoints {
            let url = format!("{endpoint}/v3/{path}");
            let response = match send_json(self.host, "POST", url, headers.clone(), body) {
                Ok(response) => response,
                Err(e) => {
                    unreachable.push(format!("{endpoint}: {e}"));
                    continue;
                }
            };
            // The first JSON value only: a streamed call (keep-alive) ends each message with a
            // newline, and a gateway may append more after an error.
            let parsed = serde_json::Deserializer::from_slice(&response.body)
                .into_iter::<Value>()
                .next()
                .and_then(Result::ok);
            if let Some(text) = parsed.as_ref().and_then(error_text) {
                return Err(format!("etcd {endpoint} /v3/{path}: {text}"));
            }
            return match (response.status, parsed) {
                (200, Some(answer)) => Ok(answer),
                (status, _) => Err(format!(
                    "etcd {endpoint} /v3/{path}: HTTP {status}: {}",
                    response.text()
                )),
            };
        }
        Err(format!(
            "etcd /v3/{path}: no endpoint answered ({})",
            unreachable.join("; ")
        ))
    }

    /// Grants a lease of `ttl_secs`; returns its ID as the decimal string etcd gave.
    pub fn grant(&self, ttl_secs: u64) -> Result<String, String> {
        let answer = self.call("lease/grant", &json!({"TTL": ttl_secs, "ID": 0}))?;
        match int64_text(&answer["ID"]) {
            Some(id) if id != "0" => Ok(id),
            _ => Err(format!("etcd: a lease grant gave no lease ID: {answer}")),
        }
    }

    /// Puts `key` = `value`, bound to `lease` when given (else permanent).
    pub fn put(&self, key: &str, value: &str, lease: Option<&str>) -> Result<(), String> {
        let mut body = json!({"key": BASE64.encode(key), "value": BASE64.encode(value)});
        if let Some(lease) = lease {
            body["lease"] = lease.into();
        }
        self.call("kv/put", &body).map(drop)
    }

    /// Renews `lease` once; `Ok(false)` when etcd no longer knows it (TTL 0 or missing).
    pub fn keep_alive(&self, lease: &str) -> Result<bool, String> {
        let answer = match self.call("lease/keepalive", &json!({"ID": lease})) {
            Ok(answer) => answer,
            Err(e) if lease_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        // A streamed call answers `{"result": {...}}`; be lenient with a bare message too.
        let result = answer.get("result").unwrap_or(&answer);
        match int64_text(&result["TTL"]) {
            Some(ttl) => Ok(ttl != "0" && !ttl.starts_with('-')),
            None => Err(format!("etcd: unexpected keep-alive answer: {answer}")),
        }
    }

    /// Revokes `lease`, deleting its keys. A lease etcd no longer knows counts as revoked: its
    /// keys are gone either way.
    pub fn revoke(&self, lease: &str) -> Result<(), String> {
        match self.call("lease/revoke", &json!({"ID": lease})) {
            Err(e) if !lease_not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<(), String> {
        self.call("kv/deleterange", &json!({"key": BASE64.encode(key)}))
            .map(drop)
    }

    /// Every key under `prefix` with its value, both as text.
    pub fn range_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let body = json!({
            "key": BASE64.encode(prefix),
            "range_end": BASE64.encode(prefix_range_end(prefix.as_bytes())),
        });
        let answer = self.call("kv/range", &body)?;
        let kvs = match &answer["kvs"] {
            Value::Null => return Ok(Vec::new()),
            Value::Array(kvs) => kvs,
            _ => return Err(format!("etcd: unexpected range answer: {answer}")),
        };
        kvs.iter()
            .map(|kv| Ok((decode(&kv["key"])?, decode(&kv["value"])?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    fn body(host: &FakeHost, n: usize) -> Value {
        serde_json::from_slice(&host.sent.borrow()[n].body).unwrap()
    }

    #[test]
    fn prefix_range_ends_follow_etcd() {
        let end = |p: &[u8]| BASE64.encode(prefix_range_end(p));
        assert_eq!(prefix_range_end(b"dtmservice/"), b"dtmservice0");
        assert_eq!(end(b"dtmservice/"), "ZHRtc2VydmljZTA=");
        assert_eq!(end(b"/microservices/trans"), "L21pY3Jvc2VydmljZXMvdHJhbnQ=");
        assert_eq!(end(b"/ego/hello/"), "L2Vnby9oZWxsbzA=");
        assert_eq!(prefix_range_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_range_end(b""), [0]);
    }

    #[test]
    fn the_gozero_worked_example() {
        let host = FakeHost::default();
        host.answer(
            200,
            json!({"header": {"revision": "1"}, "ID": "7587862089352548612", "TTL": "10"}),
        );
        host.answer(200, json!({"header": {"revision": "2"}}));
        host.answer(
            200,
            json!({"header": {"revision": "2"}, "kvs": [
            {"key": "ZHRtc2VydmljZS83NTg3ODYyMDg5MzUyNTQ4NjEy", "value": "bG9jYWxob3N0OjM2Nzkw",
             "lease": "7587862089352548612"}
        ], "count": "1"}),
        );
        let etcd = Etcd::connect(&host, "localhost:2379", None).unwrap();
        let lease = etcd.grant(10).unwrap();
        assert_eq!(lease, "7587862089352548612");
        etcd.put(
            &format!("dtmservice/{lease}"),
            "localhost:36790",
            Some(&lease),
        )
        .unwrap();
        assert_eq!(
            etcd.range_prefix("dtmservice/").unwrap(),
            [(
                "dtmservice/7587862089352548612".to_owned(),
                "localhost:36790".to_owned()
            )]
        );
        let sent = host.sent.borrow();
        let urls: Vec<&str> = sent.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://localhost:2379/v3/lease/grant",
                "http://localhost:2379/v3/kv/put",
                "http://localhost:2379/v3/kv/range"
            ]
        );
        assert!(sent.iter().all(|r| r.method == "POST"));
        drop(sent);
        assert_eq!(body(&host, 0), json!({"TTL": 10, "ID": 0}));
        assert_eq!(
            body(&host, 1),
            json!({"key": "ZHRtc2VydmljZS83NTg3ODYyMDg5MzUyNTQ4NjEy",
                   "value": "bG9jYWxob3N0OjM2Nzkw", "lease": "7587862089352548612"})
        );
        assert_eq!(
            body(&host, 2),
            json!({"key": "ZHRtc2VydmljZS8=", "range_end": "ZHRtc2VydmljZTA="})
        );
    }

    #[test]
    fn permanent_puts_carry_no_lease_and_empty_ranges_are_empty() {
        let host = FakeHost::default();
        host.answer(200, json!({"header": {}}));
        host.answer(200, json!({"header": {"revision": "3"}}));
        let etcd = Etcd::connect(&host, "h:1", None).unwrap();
        etcd.put("/ego/a", "v", None).unwrap();
        assert_eq!(body(&host, 0), json!({"key": "L2Vnby9h", "value": "dg=="}));
        assert!(etcd.range_prefix("/ego/").unwrap().is_empty());
    }

    #[test]
    fn credentials_authenticate_and_the_token_goes_on_every_call() {
        let host = FakeHost::default();
        host.answer(200, json!({"header": {}, "token": "tok.42"}));
        host.answer(200, json!({"header": {}}));
        let credentials = Credentials {
            user: "root".into(),
            password: "secret".into(),
        };
        let etcd = Etcd::connect(&host, "h:2379", Some(&credentials)).unwrap();
        etcd.delete("k").unwrap();
        let sent = host.sent.borrow();
        assert_eq!(sent[0].url, "http://h:2379/v3/auth/authenticate");
        assert!(sent[0].headers.iter().all(|(k, _)| k != "authorization"));
        assert!(sent[1]
            .headers
            .contains(&("authorization".into(), "tok.42".into())));
        drop(sent);
        assert_eq!(
            body(&host, 0),
            json!({"name": "root", "password": "secret"})
        );
        assert_eq!(body(&host, 1), json!({"key": "aw=="}));
    }

    #[test]
    fn a_refused_authentication_says_what_etcd_said() {
        let host = FakeHost::default();
        host.answer(
            400,
            json!({"error": "etcdserver: authentication failed, invalid user ID or password",
                   "message": "etcdserver: authentication failed, invalid user ID or password",
                   "code": 3}),
        );
        let credentials = Credentials {
            user: "root".into(),
            password: "wrong".into(),
        };
        let err = Etcd::connect(&host, "h:2379", Some(&credentials))
            .err()
            .unwrap();
        assert_eq!(
            err,
            "etcd http://h:2379 /v3/auth/authenticate: etcdserver: authentication failed, \
             invalid user ID or password (code 3)"
        );
    }

    #[test]
    fn endpoints_are_tried_in_order_until_one_answers() {
        let host = FakeHost::default();
        host.answers
            .borrow_mut()
            .push_back(Err("connection refused".into()));
        host.answer(200, json!({"ID": "5", "TTL": "10"}));
        let etcd = Etcd::connect(&host, "a:1,,b:2", None).unwrap();
        assert_eq!(etcd.grant(10).unwrap(), "5");
        let urls: Vec<String> = host.sent.borrow().iter().map(|r| r.url.clone()).collect();
        assert_eq!(
            urls,
            ["http://a:1/v3/lease/grant", "http://b:2/v3/lease/grant"]
        );

        let host = FakeHost::default();
        for _ in 0..2 {
            host.answers.borrow_mut().push_back(Err("refused".into()));
        }
        let etcd = Etcd::connect(&host, "a:1,b:2", None).unwrap();
        assert_eq!(
            etcd.delete("k").unwrap_err(),
            "etcd /v3/kv/deleterange: no endpoint answered (http://a:1: refused; http://b:2: refused)"
        );
        assert!(Etcd::connect(&host, " , ", None).is_err());
    }

    #[test]
    fn an_error_answer_is_final_and_quoted() {
        let host = FakeHost::default();
        host.answer(503, json!({"Error": "etcdserver: no leader", "Code": 14}));
        let etcd = Etcd::connect(&host, "a:1,b:2", None).unwrap();
        assert_eq!(
            etcd.grant(10).unwrap_err(),
            "etcd http://a:1 /v3/lease/grant: etcdserver: no leader (code 14)"
        );
        assert_eq!(host.sent.borrow().len(), 1);
        host.answers.borrow_mut().push_back(Ok(sdk::Response {
            status: 502,
            headers: vec![],
            body: b"bad gateway".to_vec(),
        }));
        assert_eq!(
            etcd.grant(10).unwrap_err(),
            "etcd http://a:1 /v3/lease/grant: HTTP 502: bad gateway"
        );
    }

    #[test]
    fn keep_alive_tells_a_live_lease_from_a_lost_one() {
        let host = FakeHost::default();
        host.answer(
            200,
            json!({"result": {"header": {}, "ID": "5", "TTL": "10"}}),
        );
        host.answers.borrow_mut().push_back(Ok(sdk::Response {
            status: 200,
            headers: vec![],
            body: b"{\"result\":{\"header\":{},\"ID\":\"5\"}}\n{\"result\":{}}\n".to_vec(),
        }));
        host.answer(
            200,
            json!({"error": {"grpc_code": 5, "http_code": 404,
                   "message": "etcdserver: requested lease not found"}}),
        );
        host.answer(
            500,
            json!({"error": "etcdserver: request timed out", "code": 14}),
        );
        let etcd = Etcd::connect(&host, "h:1", None).unwrap();
        assert!(etcd.keep_alive("5").unwrap());
        assert!(!etcd.keep_alive("5").unwrap());
        assert!(!etcd.keep_alive("5").unwrap());
        assert!(etcd
            .keep_alive("5")
            .unwrap_err()
            .contains("request timed out"));
        assert_eq!(body(&host, 0), json!({"ID": "5"}));
        assert!(host.sent.borrow()[0].url.ends_with("/v3/lease/keepalive"));
    }

    #[test]
    fn revoking_a_gone_lease_succeeds() {
        let host = FakeHost::default();
        host.answer(200, json!({"header": {}}));
        host.answer(
            400,
            json!({"error": "etcdserver: requested lease not found", "code": 5}),
        );
        host.answer(
            400,
            json!({"error": "etcdserver: permission denied", "code": 7}),
        );
        let etcd = Etcd::connect(&host, "h:1", None).unwrap();
        etcd.revoke("9").unwrap();
        etcd.revoke("9").unwrap();
        assert!(etcd.revoke("9").unwrap_err().contains("permission denied"));
        assert_eq!(body(&host, 0), json!({"ID": "9"}));
        assert!(host.sent.borrow()[0].url.ends_with("/v3/lease/revoke"));
    }

    #[test]
    fn bad_answers_are_errors() {
        let host = FakeHost::default();
        host.answer(200, json!({"TTL": "10"}));
        host.answer(200, json!({"kvs": [{"key": "!!", "value": "dg=="}]}));
        let etcd = Etcd::connect(&host, "h:1", None).unwrap();
        assert!(etcd.grant(10).unwrap_err().contains("no lease ID"));
        assert!(etcd.range_prefix("p").unwrap_err().contains("not base64"));
    }
}
