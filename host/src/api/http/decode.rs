//! Request bodies read the way dtm's Go server reads them: keys matched case-insensitively,
//! `null` as the zero value, unknown keys ignored; and never more than the configured size.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::ApiError;
use crate::engine::{lowercase_keys, BranchRequest, TransRequest};
use crate::error::DtmError;
use crate::model::{Protocol, TransOptions};

pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes"),
        )
    })
}

/// `null` reads as the type's default, as Go's decoder does.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TransRequestJson {
    #[serde(deserialize_with = "nullable")]
    gid: String,
    #[serde(deserialize_with = "nullable")]
    trans_type: String,
    #[serde(deserialize_with = "nullable")]
    steps: Vec<Option<BTreeMap<String, Option<String>>>>,
    #[serde(deserialize_with = "nullable")]
    payloads: Vec<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    custom_data: String,
    #[serde(deserialize_with = "nullable")]
    query_prepared: String,
    #[serde(deserialize_with = "nullable")]
    protocol: String,
    #[serde(deserialize_with = "nullable")]
    wait_result: bool,
    #[serde(deserialize_with = "nullable")]
    timeout_to_fail: i64,
    #[serde(deserialize_with = "nullable")]
    request_timeout: i64,
    #[serde(deserialize_with = "nullable")]
    retry_interval: i64,
    #[serde(deserialize_with = "nullable")]
    branch_headers: BTreeMap<String, Option<String>>,
    #[serde(deserialize_with = "nullable")]
    concurrent: bool,
    #[serde(deserialize_with = "nullable")]
    retry_limit: i64,
    #[serde(deserialize_with = "nullable")]
    retry_count: i64,
    #[serde(deserialize_with = "nullable")]
    rollback_reason: String,
    #[serde(deserialize_with = "nullable")]
    req_extra: BTreeMap<String, Option<String>>,
}

/// dtm deletes these from gids given in HTTP bodies.
pub fn clean_gid(gid: &str) -> String {
    gid.chars()
        .filter(|c| !matches!(c, '\n' | '\r' | ';'))
        .collect()
}

/// Why a request body is refused before its fields are read; the text is the answer's message.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body must be a JSON object")]
    NonObject,
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(serde_json::Error),
    /// registerBranch: a value that is not a string (or null); `kind` is e.g. `a number`.
    #[error("registerBranch body must hold only strings, but '{key}' is {kind}")]
    NonString { key: String, kind: &'static str },
}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, BodyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BodyError::NonObject),
        Err(e) => Err(BodyError::InvalidJson(e)),
    }
}

pub fn parse_protocol(text: &str) -> Result<Option<Protocol>, DtmError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|()| {
        DtmError::BadRequest(format!(
            "unknown protocol '{text}': expected http, grpc or json-rpc"
        ))
    })
}

/// The body of prepare / submit / abort on the REST routes, whose gids dtm cleans. Bad JSON
/// is a 500, as in dtm.
pub fn trans_request(body: &[u8]) -> Result<TransRequest, DtmError> {
    let mut request = trans_request_as_sent(body)?;
    request.gid = clean_gid(&request.gid);
    Ok(request)
}

/// A TransRequest object with its gid exactly as sent.
pub fn trans_request_as_sent(body: &[u8]) -> Result<TransRequest, DtmError> {
    let object = json_object(body).map_err(|e| DtmError::Other(e.to_string()))?;
    let json: TransRequestJson = serde_json::from_value(lowercase_keys(Value::Object(object)))
        .map_err(|e| DtmError::Other(format!("request body: {e}")))?;
    let strings = |m: BTreeMap<String, Option<String>>| -> BTreeMap<String, String> {
        m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    };
    Ok(TransRequest {
        gid: json.gid,
        trans_type: json.trans_type,
        steps: json
            .steps
            .into_iter()
            .map(|s| strings(s.unwrap_or_default()))
            .collect(),
        payloads: json
            .payloads
            .into_iter()
            .map(|p| p.unwrap_or_default().into_bytes())
            .collect(),
        custom_data: json.custom_data,
        query_prepared: json.query_prepared,
        protocol: parse_protocol(&json.protocol)?,
        options: TransOptions {
            wait_result: json.wait_result,
            timeout_to_fail: json.timeout_to_fail,
            request_timeout: json.request_timeout,
            retry_interval: json.retry_interval,
            branch_headers: strings(json.branch_headers),
            concurrent: json.concurrent,
            retry_limit: json.retry_limit,
            retry_count: json.retry_count,
        },
        rollback_reason: json.rollback_reason,
        req_extra: strings(json.req_extra),
    })
}

/// The gid of a `{"gid": …}` body (forceStop, resetNextCronTime).
pub fn gid_only(body: &[u8]) -> Result<String, DtmError> {
    Ok(trans_request(body)?.gid)
}

/// The registerBranch body: a flat object of strings (or nulls), gid as sent; the error text
/// otherwise (the REST route answers it with 400, as dtm does).
pub fn branch_request(body: &[u8]) -> Result<BranchRequest, BodyError> {
    let object = json_object(body)?;
    let mut data = BTreeMap::new();
    for (k, v) in object {
        match v {
            Value::String(s) => {
                data.insert(k, s);
            }
            Value::Null => {}
            other => {
                let kind = match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                return Err(BodyError::NonString { key: k, kind });
            }
        }
    }
    let mut take = |key: &str| data.remove(key).unwrap_or_default();
    let gid = take("gid");
    let trans_type = take("trans_type");
    let branch_id = take("branch_id");
    let payload = take("data").into_bytes();
    Ok(BranchRequest {
        gid,
        trans_type,
        branch_id,
        payload,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_nulls_and_unknown_keys_are_accepted() {
        let body = br#"{"gid":"G","trans_type":"tcc","custom_data":null,"query_prepared":null,"protocol":null,"passthrough_headers":[],"branch_headers":{},"steps":[],"payloads":[],"wait_result":false,"timeout_to_fail":0,"request_timeout":8,"retry_interval":0,"concurrent":false}"#;
        let req = trans_request(body).unwrap();
        assert_eq!(
            (req.gid.as_str(), req.options.request_timeout, req.protocol),
            ("G", 8, None)
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_gid_is_cleaned() {
        let req =
            trans_request(br#"{"Gid":"a;b\nc","TRANS_TYPE":"saga","Wait_Result":true}"#).unwrap();
        assert_eq!(
            (
                req.gid.as_str(),
                req.trans_type.as_str(),
                req.options.wait_result
            ),
            ("abc", "saga", true)
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(trans_request(br#"{"timeout_to_fail":1.5}"#).is_err());
        assert!(trans_request(br#"{"timeout_to_fail":"1"}"#).is_err());
        assert!(trans_request(b"[1]").is_err());
        assert!(trans_request(b"{").is_err());
        assert!(trans_request(br#"{"protocol":"smtp"}"#).is_err());
    }

    #[test]
    fn branch_bodies_must_be_flat_strings() {
        let req = branch_request(br#"{"gid":"g","trans_type":"tcc","branch_id":"01","data":"{}","confirm":"http://c","try":"x","status":null}"#).unwrap();
        assert_eq!(
            (req.branch_id.as_str(), req.payload.as_slice()),
            ("01", b"{}".as_slice())
        );
        assert_eq!(
            req.data.get("confirm").map(String::as_str),
            Some("http://c")
        );
        assert!(branch_request(br#"{"gid":1}"#)
            .unwrap_err()
            .to_string()
            .contains("number"));
    }
}
