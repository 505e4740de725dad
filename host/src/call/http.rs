//! Plain HTTP branch calls (api.md §4.2) and the classification of their responses (§3.4).

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};

use super::{BranchCall, CallResult};
use crate::model::TransType;

#[derive(Clone)]
pub struct HttpCaller {
    client: reqwest::Client,
}

impl HttpCaller {
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("dtm-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client })
    }

    pub async fn call(&self, call: &BranchCall) -> CallResult {
        let url = with_dtm_params(call);
        let post = !call.body.is_empty() || call.trans_type == TransType::Xa;
        let mut request = if post {
            self.client.post(&url).body(call.body.clone())
        } else {
            self.client.get(&url)
        };
        request = request
            .header(CONTENT_TYPE, "application/json")
            .timeout(call.timeout);
        for (name, value) in call.headers.iter() {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(name), Ok(value)) => request = request.header(name, value),
                _ => return CallResult::Error(format!("invalid branch header '{name}'")),
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return CallResult::Error(format!("http call to {url} failed: {e}")),
        };
        let status = response.status().as_u16();
        match response.text().await {
            Ok(body) => classify(status, &body),
            Err(e) => CallResult::Error(format!("reading the response of {url} failed: {e}")),
        }
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
