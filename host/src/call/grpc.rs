//! gRPC branch calls (api.md §4.7): the stored payload bytes go out as the request message
//! unchanged (a pass-through codec, no re-encoding), with dtm's metadata; the reply is ignored
//! and the status code classified (§3.5). One lazily connected channel per server, reused.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{BranchCall, CallResult};

/// Splits a branch URL the way dtm's default driver does: at the first `/`, into the server
/// (`host:port`) and the method path (`/package.Service/Method`).
pub fn split_url(url: &str) -> Result<(&str, &str), String> {
    if url.contains("://") {
        return Err(format!(
            "call dtmdriver.Use() before you use custom scheme for '{url}'"
        ));
    }
    match url.find('/') {
        Some(at) if at > 0 => Ok((&url[..at], &url[at..])),
        _ => Err(format!("bad url: '{url}'. no '/' found")),
    }
}

#[derive(Default)]
pub struct GrpcCaller {
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcCaller {
    fn channel(&self, server: &str) -> Result<Channel, String> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| "gRPC channel cache poisoned".to_owned())?;
        if let Some(channel) = channels.get(server) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{server}"))
            .map_err(|e| format!("bad gRPC server '{server}': {e}"))?
            .connect_lazy();
        channels.insert(server.to_owned(), channel.clone());
        Ok(channel)
    }

    pub async fn call(&self, call: &BranchCall) -> CallResult {
        match self.try_call(call).await {
            Ok(()) => CallResult::Success,
            Err(result) => result,
        }
    }

    async fn try_call(&self, call: &BranchCall) -> Result<(), CallResult> {
        let (server, method) = split_url(&call.url).map_err(CallResult::Error)?;
        let path = method
            .parse::<http::uri::PathAndQuery>()
            .map_err(|e| CallResult::Error(format!("bad gRPC method '{method}': {e}")))?;
        let channel = self.channel(server).map_err(CallResult::Error)?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| CallResult::Error(format!("gRPC server {server} not ready: {e}")))?;
        let mut request = tonic::Request::new(call.body.clone());
        request.set_timeout(call.timeout);
        let metadata = request.metadata_mut();
        let dtm = [
            ("dtm-gid", call.gid.as_str()),
            ("dtm-trans_type", call.trans_type.as_str()),
            ("dtm-branch_id", call.branch_id.as_str()),
            ("dtm-op", call.op.as_str()),
            ("dtm-dtm", ""),
        ];
        let headers = call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in dtm.into_iter().chain(headers) {
            let key = AsciiMetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
                .map_err(|_| CallResult::Error(format!("invalid branch header '{key}'")))?;
            let value = AsciiMetadataValue::try_from(value).map_err(|_| {
                CallResult::Error(format!("invalid value of branch header '{key}'"))
            })?;
            metadata.insert(key, value);
        }
        grpc.unary(request, path, RawCodec)
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

/// dtm's rules: `Aborted` is FAILURE (but `Aborted` "ONGOING" is the pre-v1.10 ONGOING),
/// `FailedPrecondition` is ONGOING, every other code is an error to retry.
pub fn classify(status: Status) -> CallResult {
    match status.code() {
        Code::Aborted if status.message() == "ONGOING" => {
            CallResult::Ongoing(status.message().to_owned())
        }
        Code::Aborted => CallResult::Failure(format!("{} FAILURE", status.message())),
        Code::FailedPrecondition => CallResult::Ongoing(status.message().to_owned()),
        code => CallResult::Error(format!("gRPC status {code:?}: {}", status.message())),
    }
}

/// Sends bytes as the message and reads the reply as bytes: no protobuf on either side.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_at_the_first_slash() {
        assert_eq!(
            split_url("localhost:58081/busi.Busi/TransOut"),
            Ok(("localhost:58081", "/busi.Busi/TransOut"))
        );
        assert!(split_url("localhost:58081")
            .unwrap_err()
            .contains("no '/' found"));
        assert!(split_url("etcd://x/busi.Busi/TransOut")
            .unwrap_err()
            .contains("custom scheme"));
    }

    #[test]
    fn status_codes_follow_dtm() {
        assert!(
            matches!(classify(Status::aborted("no money")), CallResult::Failure(m) if m.contains("no money"))
        );
        assert!(matches!(
            classify(Status::aborted("ONGOING")),
            CallResult::Ongoing(_)
        ));
        assert!(matches!(
            classify(Status::failed_precondition("wait")),
            CallResult::Ongoing(_)
        ));
        for status in [
            Status::unavailable(""),
            Status::unknown(""),
            Status::internal(""),
            Status::unimplemented(""),
            Status::deadline_exceeded(""),
        ] {
            assert!(matches!(classify(status), CallResult::Error(_)));
        }
    }
}
