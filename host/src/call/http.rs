//! Plain HTTP branch calls (docs/api.md §4.2) and the classification of their responses (§3.4).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

/// How much of a branch's answer is read (and may end up in a rollback reason).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

use serde_json::{json, Value};

use super::{BranchCall, CallError, CallResult, ClientError};
use crate::model::TransType;
use crate::protocol::jsonrpc::{FAILURE_CODE, ONGOING_CODE};

#[derive(Clone)]
pub struct HttpCaller {
    client: reqwest::Client,
}

impl HttpCaller {
    pub fn new() -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("dtm-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Branches)?;
        Ok(Self { client })
    }

    pub async fn call(&self, call: &BranchCall) -> CallResult {
        let url = with_dtm_params(call);
        // dtm sends GET for an empty body, except to xa branches; a workflow callback is
        // always POST here (dtm's GET for empty workflow input is a quirk).
        let post =
            !call.body.is_empty() || matches!(call.trans_type, TransType::Xa | TransType::Workflow);
        let request = if post {
            self.client.post(&url).body(call.body.clone())
        } else {
            self.client.get(&url)
        };
        match self.send(request, call, &url).await {
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
        let request = self.client.post(url).body(envelope.to_string());
        let (status, body) = self.send(request, call, &call.url).await?;
        Ok(match classify(status, &body) {
            CallResult::Success => classify_json_rpc(&body),
            other => other,
        })
    }

    /// Adds dtm's headers and the timeout, sends, and reads the whole answer.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        call: &BranchCall,
        url: &str,
    ) -> Result<(u16, String), CallError> {
        // dtm's headers: Content-Type, then the branch headers, a same-named one replacing it.
        let mut headers = HeaderMap::new();
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
        let mut response = request
            .headers(headers)
            .timeout(call.timeout)
            .send()
            .await
            .map_err(|error| CallError::Send {
                url: url.to_owned(),
                error,
            })?;
        let status = response.status().as_u16();
        // Only the start of an answer is read: enough to classify it and to report why.
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER_BYTES - body.len())])
                }
                Ok(None) => break,
                Err(error) => {
                    return Err(CallError::Read {
                        url: url.to_owned(),
                        error,
                    })
                }
            }
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        Ok((status, body))
    }
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
