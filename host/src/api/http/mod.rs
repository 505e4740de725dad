//! dtm's HTTP API on `HttpPort`: routes under `/api/dtmsvr`, plus `/api/ping` (docs/api.md §2) and
//! the operating endpoints of `ops`.
//! Handlers only translate: wire → engine request, engine result → dtm's JSON envelope.

pub(crate) mod decode;
mod error;
mod ops;
mod starting;
mod views;

pub use starting::StartingApp;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::DtmError;
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::model::ScanFilter;
use error::ApiError;

type ApiResult = Result<Json<Value>, ApiError>;

#[derive(Clone)]
pub struct HttpState {
    pub engine: Arc<Engine>,
    pub max_body_bytes: usize,
    /// Whether `POST /api/test/clock/advance` may move the engine's clock (tests only).
    pub test_clock: bool,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

pub fn router(state: HttpState) -> Router {
    let dtm: Vec<(&str, MethodRouter<HttpState>)> = vec![
        ("/version", get(version)),
        ("/newGid", get(new_gid)),
        ("/prepare", post(prepare)),
        ("/submit", post(submit)),
        ("/abort", post(abort)),
        ("/forceStop", post(force_stop)),
        ("/resetNextCronTime", post(reset_next_cron_time)),
        ("/registerBranch", post(register_branch)),
        ("/registerXaBranch", post(register_branch)),
        ("/registerTccBranch", post(register_branch)),
        ("/prepareWorkflow", post(prepare_workflow)),
        ("/query", get(query)),
        ("/all", get(all)),
        ("/resetCronTime", get(reset_cron_time)),
        ("/subscribe", get(subscribe)),
        ("/unsubscribe", get(unsubscribe)),
        ("/topic/{name}", delete(delete_topic)),
        ("/scanKV", get(scan_kv)),
        ("/queryKV", get(query_kv)),
    ];
    let mut routes: Vec<(String, MethodRouter<HttpState>)> = dtm
        .into_iter()
        .map(|(path, route)| (format!("/api/dtmsvr{path}"), route))
        .collect();
    routes.extend([
        (
            "/api/ping".to_owned(),
            any(|| async { Json(json!({"msg": "pong"})) }),
        ),
        ("/api/json-rpc".to_owned(), post(json_rpc)),
        ("/api/metrics".to_owned(), get(ops::metrics)),
        ("/api/health".to_owned(), get(ops::health)),
        ("/api/ready".to_owned(), get(ops::ready)),
    ]);
    if state.test_clock {
        routes.push(("/api/test/clock/advance".to_owned(), post(advance_clock)));
    }
    let paths: Arc<Vec<String>> = Arc::new(routes.iter().map(|(path, _)| path.clone()).collect());
    let mut app = Router::new();
    for (path, route) in routes {
        app = app.route(&path, route);
    }
    app.fallback(move |method: Method, uri: Uri| {
        let paths = paths.clone();
        async move { redirect_or_not_found(&paths, &method, &uri) }
    })
    // As dtm's router (gin): a known path with another method is not found.
    .method_not_allowed_fallback(not_found)
    .with_state(state)
}

/// dtm's router (gin) redirects a path with a trailing slash to the route without it: 301 for
/// GET, 307 (the method and body kept) otherwise; any other unknown path is not found.
fn redirect_or_not_found(paths: &[String], method: &Method, uri: &Uri) -> Response {
    let Some(trimmed) = uri.path().strip_suffix('/').filter(|p| !p.is_empty()) else {
        return not_found_page();
    };
    if !paths.iter().any(|route| route_matches(route, trimmed)) {
        return not_found_page();
    }
    let location = match uri.query() {
        Some(query) => format!("{trimmed}?{query}"),
        None => trimmed.to_owned(),
    };
    if method == Method::GET {
        // Go's http.Redirect writes this body for a GET.
        let body = format!("<a href=\"{location}\">Moved Permanently</a>.\n\n");
        (
            StatusCode::MOVED_PERMANENTLY,
            [
                (header::LOCATION, location),
                (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            ],
            body,
        )
            .into_response()
    } else {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response()
    }
}

/// Whether `path` is served by the route `pattern` (whose `{name}` segments match any one).
fn route_matches(pattern: &str, path: &str) -> bool {
    let (mut pattern, mut path) = (pattern.split('/'), path.split('/'));
    loop {
        match (pattern.next(), path.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p == s || (p.starts_with('{') && !s.is_empty()) => {}
            _ => return false,
        }
    }
}

async fn not_found() -> Response {
    not_found_page()
}

fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "404 page not found",
    )
        .into_response()
}

fn success() -> ApiResult {
    Ok(Json(json!({"dtm_result": "SUCCESS"})))
}

fn query_params(raw: Option<String>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A decimal query parameter, or dtm's `convert to int error`.
fn int_param(params: &HashMap<String, String>, key: &str) -> Result<Option<i64>, DtmError> {
    match params.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| DtmError::Other(format!("convert to int error: {v}"))),
    }
}

fn limit_param(params: &HashMap<String, String>) -> Result<usize, DtmError> {
    match int_param(params, "limit")? {
        None => Ok(100),
        Some(n) if (1..=10_000).contains(&n) => Ok(n as usize),
        Some(n) => Err(DtmError::BadRequest(format!(
            "limit must be between 1 and 10000, got {n}"
        ))),
    }
}

async fn version() -> Json<Value> {
    Json(json!({"version": concat!("v", env!("CARGO_PKG_VERSION"))}))
}

async fn new_gid(State(s): State<HttpState>) -> Json<Value> {
    Json(json!({"dtm_result": "SUCCESS", "gid": s.engine.new_gid()}))
}

async fn prepare(State(s): State<HttpState>, body: Body) -> ApiResult {
    let body = decode::read_body(body, s.max_body_bytes).await?;
    s.engine.prepare(decode::trans_request(&body)?).await?;
    success()
}

async fn submit(State(s): State<HttpState>, body: Body) -> ApiResult {
    let body = decode::read_body(body, s.max_body_bytes).await?;
    s.engine.submit(decode::trans_request(&body)?).await?;
    success()
}

async fn abort(State(s): State<HttpState>, body: Body) -> ApiResult {
    let body = decode::read_body(body, s.max_body_bytes).await?;
    s.engine.abort(decode::trans_request(&body)?).await?;
    success()
}

async fn force_stop(State(s): State<HttpState>, body: Body) -> ApiResult {
    let body = decode::read_body(body, s.max_body_bytes).await?;
    s.engine.force_stop(&decode::gid_only(&body)?).await?;
    success()
}

async fn reset_next_cron_time(State(s): State<HttpState>, body: Body) -> ApiResult {
    let body = decode::read_body(body, s.max_body_bytes).await?;
    s.engine
        .reset_next_cron_time(&decode::gid_only(&body)?)
        .await?;
    success()
}

async fn register_branch(State(s): State<HttpState>, body: Body) -> ApiResult {
    let body = decode::read_body(body, s.max_body_bytes).await?;
    let mut request = decode::branch_request(&body)
        .map_err(|e| ApiError::Status(StatusCode::BAD_REQUEST, e.to_string()))?;
    request.gid = decode::clean_gid(&request.gid);
    s.engine.register_branch(request).await?;
    success()
}

async fn prepare_workflow(State(s): State<HttpState>, body: Body) -> ApiResult {
    let body = decode::read_body(body, s.max_body_bytes).await?;
    let (global, progress) = s
        .engine
        .prepare_workflow(decode::trans_request(&body)?)
        .await?;
    Ok(Json(json!({
        "transaction": views::transaction(&global),
        "progresses": progress.iter().map(views::branch).collect::<Vec<_>>(),
    })))
}

async fn json_rpc(State(s): State<HttpState>, body: Body) -> Response {
    match decode::read_body(body, s.max_body_bytes).await {
        Ok(body) => crate::api::jsonrpc::handle(&s.engine, &body)
            .await
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn query(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let params = query_params(raw);
    let gid = params.get("gid").map(String::as_str).unwrap_or_default();
    let (global, branches) = s.engine.query(gid).await?;
    Ok(Json(json!({
        "transaction": global.as_ref().map(views::transaction),
        "branches": branches.iter().map(views::branch).collect::<Vec<_>>(),
    })))
}

async fn all(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let params = query_params(raw);
    let position = params.get("position").cloned().unwrap_or_default();
    if let Some(gid) = params.get("gid").filter(|g| !g.is_empty()) {
        let found = s.engine.find(gid).await?;
        return Ok(Json(json!({
            "transactions": found.as_ref().map(|g| vec![views::transaction(g)]),
            "next_position": position,
        })));
    }
    let filter = ScanFilter {
        status: params.get("status").cloned().unwrap_or_default(),
        trans_type: params.get("transType").cloned().unwrap_or_default(),
        create_start: int_param(&params, "createTimeStart")?,
        create_end: int_param(&params, "createTimeEnd")?,
    };
    let page = s
        .engine
        .list(&position, limit_param(&params)?, &filter)
        .await?;
    Ok(Json(json!({
        "transactions": page.items.iter().map(views::transaction).collect::<Vec<_>>(),
        "next_position": page.next_position,
    })))
}

async fn reset_cron_time(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let params = query_params(raw);
    let timeout = int_param(&params, "timeout")?;
    let (count, has_remaining) = s
        .engine
        .reset_cron_times(timeout, limit_param(&params)?)
        .await?;
    Ok(Json(
        json!({"has_remaining": has_remaining, "succeed_count": count}),
    ))
}

async fn subscribe(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let p = query_params(raw);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    s.engine
        .subscribe(get("topic"), get("url"), get("remark"))
        .await?;
    success()
}

async fn unsubscribe(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let p = query_params(raw);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    s.engine.unsubscribe(get("topic"), get("url")).await?;
    success()
}

async fn delete_topic(State(s): State<HttpState>, Path(name): Path<String>) -> ApiResult {
    s.engine.delete_topic(&name).await?;
    success()
}

async fn scan_kv(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let p = query_params(raw);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    let page = s
        .engine
        .scan_kv(get("cat"), get("position"), limit_param(&p)?)
        .await?;
    Ok(Json(json!({
        "kv": page.items.iter().map(views::kv).collect::<Vec<_>>(),
        "next_position": page.next_position,
    })))
}

async fn query_kv(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let p = query_params(raw);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    let entries = s.engine.query_kv(get("cat"), get("key")).await?;
    Ok(Json(
        json!({"kv": entries.iter().map(views::kv).collect::<Vec<_>>()}),
    ))
}

/// Tests only (`--test-clock`): moves the engine's clock forward by `?seconds=N`.
async fn advance_clock(State(s): State<HttpState>, RawQuery(raw): RawQuery) -> ApiResult {
    let seconds = int_param(&query_params(raw), "seconds")?.unwrap_or(0);
    s.engine.clock().advance_ms(seconds.saturating_mul(1000));
    success()
}
