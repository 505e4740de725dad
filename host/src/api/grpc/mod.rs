//! dtm's gRPC API on `GrpcPort`: service `dtmgimp.Dtm` plus server reflection (docs/api.md §5).
//! Handlers only translate: protobuf → engine request, engine result → gRPC status (§3.2).

pub mod codec;

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::engine::{BranchRequest, Engine, TransRequest};
use crate::error::DtmError;
use crate::model::{Protocol, TransOptions};
use crate::proto::dtmgimp::dtm_server::{Dtm, DtmServer};
use crate::proto::dtmgimp::{
    DtmBranchRequest, DtmGidReply, DtmProgress, DtmProgressesReply, DtmRequest, DtmTopicRequest,
    DtmTransaction,
};

type RpcResult<T> = Result<Response<T>, Status>;

/// The one mapping from engine errors to gRPC status codes.
pub fn status(e: DtmError) -> Status {
    match e {
        DtmError::Failure(m) => Status::aborted(m),
        DtmError::Ongoing(m) => Status::failed_precondition(m),
        DtmError::BadRequest(m) | DtmError::InvalidInput(m) => Status::invalid_argument(m),
        DtmError::Internal(m) => Status::internal(m),
        e @ (DtmError::Other(_) | DtmError::Store(_)) => Status::unknown(e.to_string()),
    }
}

pub struct DtmService {
    engine: Arc<Engine>,
}

/// The `dtmgimp.Dtm` service, ready to add to a tonic server.
pub fn service(engine: Arc<Engine>) -> DtmServer<DtmService> {
    DtmServer::new(DtmService { engine })
}

/// `Steps` travels as JSON text: `[{"action":"…","compensate":"…"}]`, `""` or `null` for none.
fn steps(text: &str) -> Result<Vec<BTreeMap<String, String>>, DtmError> {
    if text.trim().is_empty() || text.trim() == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(text)
        .map_err(|e| DtmError::BadRequest(format!("Steps is not a JSON array of string maps: {e}")))
}

fn trans_request(r: DtmRequest) -> Result<TransRequest, DtmError> {
    let o = r.trans_options.unwrap_or_default();
    Ok(TransRequest {
        steps: steps(&r.steps)?,
        gid: r.gid,
        trans_type: r.trans_type,
        payloads: r.bin_payloads,
        custom_data: r.customed_data,
        query_prepared: r.query_prepared,
        protocol: Some(Protocol::Grpc),
        options: TransOptions {
            wait_result: o.wait_result,
            timeout_to_fail: o.timeout_to_fail,
            request_timeout: o.request_timeout,
            retry_interval: o.retry_interval,
            branch_headers: o.branch_headers.into_iter().collect(),
            concurrent: false,
            retry_limit: o.retry_limit,
            retry_count: 0,
        },
        rollback_reason: r.rollback_reason,
        req_extra: r.req_extra.into_iter().collect(),
    })
}

#[tonic::async_trait]
impl Dtm for DtmService {
    async fn new_gid(&self, _: Request<()>) -> RpcResult<DtmGidReply> {
        Ok(Response::new(DtmGidReply {
            gid: self.engine.new_gid(),
        }))
    }

    async fn submit(&self, r: Request<DtmRequest>) -> RpcResult<()> {
        let req = trans_request(r.into_inner()).map_err(status)?;
        self.engine.submit(req).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn prepare(&self, r: Request<DtmRequest>) -> RpcResult<()> {
        let req = trans_request(r.into_inner()).map_err(status)?;
        self.engine.prepare(req).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn abort(&self, r: Request<DtmRequest>) -> RpcResult<()> {
        let req = trans_request(r.into_inner()).map_err(status)?;
        self.engine.abort(req).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn register_branch(&self, r: Request<DtmBranchRequest>) -> RpcResult<()> {
        let r = r.into_inner();
        let req = BranchRequest {
            gid: r.gid,
            trans_type: r.trans_type,
            branch_id: r.branch_id,
            payload: r.busi_payload,
            data: r.data.into_iter().collect(),
        };
        self.engine.register_branch(req).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn prepare_workflow(&self, r: Request<DtmRequest>) -> RpcResult<DtmProgressesReply> {
        let req = trans_request(r.into_inner()).map_err(status)?;
        let (global, progress) = self.engine.prepare_workflow(req).await.map_err(status)?;
        Ok(Response::new(DtmProgressesReply {
            transaction: Some(DtmTransaction {
                gid: global.gid,
                status: global.status.to_string(),
                rollback_reason: global.rollback_reason,
                // dtm leaves Result empty over gRPC; the SDK needs it to return a finished
                // workflow's result, as over HTTP.
                result: global.result,
            }),
            progresses: progress
                .into_iter()
                .map(|b| DtmProgress {
                    status: b.status,
                    bin_data: b.bin_data,
                    branch_id: b.branch_id,
                    op: b.op,
                })
                .collect(),
        }))
    }

    async fn subscribe(&self, r: Request<DtmTopicRequest>) -> RpcResult<()> {
        let r = r.into_inner();
        self.engine
            .subscribe(&r.topic, &r.url, &r.remark)
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    async fn unsubscribe(&self, r: Request<DtmTopicRequest>) -> RpcResult<()> {
        let r = r.into_inner();
        self.engine
            .unsubscribe(&r.topic, &r.url)
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    async fn delete_topic(&self, r: Request<DtmTopicRequest>) -> RpcResult<()> {
        self.engine
            .delete_topic(&r.into_inner().topic)
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }
}
