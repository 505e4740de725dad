//! The gRPC API and gRPC branches against the real binary, with a client generated from a
//! proto of dtm's shape and a real gRPC business service.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::grpc::GrpcBusi;
use common::{Busi, Host};
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use dtm_host::proto::dtmgimp::{DtmBranchRequest, DtmRequest, DtmTopicRequest, DtmTransOptions};
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

async fn client(host: &Host) -> DtmClient<Channel> {
    DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap()
}

fn saga(gid: &str, busi: &GrpcBusi, wait: bool) -> DtmRequest {
    let steps = json!([
        {"action": busi.url("/busi.Busi/TransOut"), "compensate": busi.url("/busi.Busi/TransOutRevert")},
        {"action": busi.url("/busi.Busi/TransIn"), "compensate": busi.url("/busi.Busi/TransInRevert")},
    ]);
    DtmRequest {
        gid: gid.into(),
        trans_type: "saga".into(),
        steps: steps.to_string(),
        bin_payloads: vec![vec![8, 30, 0xff, 0], vec![8, 31]],
        trans_options: Some(DtmTransOptions {
            wait_result: wait,
            branch_headers: HashMap::from([("Test_Header".to_owned(), "test".to_owned())]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn saga_over_grpc_sends_raw_payloads_and_dtm_metadata() {
    let (host, busi) = (Host::start().await, GrpcBusi::start().await);
    let mut dtm = client(&host).await;
    let gid = dtm.new_gid(()).await.unwrap().into_inner().gid;
    assert!(gid.len() >= 20);
    dtm.submit(saga(&gid, &busi, true)).await.unwrap();
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["prepared", "succeed", "prepared", "succeed"]
    );
    let q = host.query(&gid).await;
    assert_eq!(q["transaction"]["protocol"], "grpc");
    let out = &busi.calls("/busi.Busi/TransOut")[0];
    assert_eq!(
        out.body,
        vec![8, 30, 0xff, 0],
        "payload bytes are sent as given"
    );
    for (key, value) in [
        ("dtm-gid", gid.as_str()),
        ("dtm-trans_type", "saga"),
        ("dtm-branch_id", "01"),
        ("dtm-op", "action"),
        ("dtm-dtm", ""),
        ("test_header", "test"),
    ] {
        assert_eq!(
            out.metadata.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(out.metadata["content-type"], "application/grpc");
    assert_eq!(
        out.metadata["user-agent"],
        concat!("dtm-host/", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn grpc_status_codes_drive_the_saga() {
    let (host, busi) = (Host::start().await, GrpcBusi::start().await);
    let mut dtm = client(&host).await;
    busi.once("/busi.Busi/TransIn", Code::Aborted);
    let err = dtm.submit(saga("aborted", &busi, true)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(
        host.branch_statuses("aborted").await,
        ["succeed", "succeed", "succeed", "failed"]
    );
    assert!(
        host.query("aborted").await["transaction"]["rollback_reason"]
            .as_str()
            .unwrap()
            .contains("scripted Aborted")
    );

    busi.once("/busi.Busi/TransOut", Code::FailedPrecondition);
    assert_eq!(
        dtm.submit(saga("ongoing", &busi, true))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    let q = host.query("ongoing").await;
    assert_eq!(
        (
            q["transaction"]["status"].as_str(),
            q["transaction"]["next_cron_interval"].as_i64()
        ),
        (Some("submitted"), Some(10))
    );

    busi.once("/busi.Busi/TransOut", Code::Unavailable);
    dtm.submit(saga("unavailable", &busi, true))
        .await
        .unwrap_err();
    let q = host.query("unavailable").await;
    assert_eq!(
        (
            q["transaction"]["status"].as_str(),
            q["transaction"]["next_cron_interval"].as_i64()
        ),
        (Some("submitted"), Some(20))
    );
    host.advance_clock(25).await;
    host.wait_status("ongoing", "succeed", 10).await;
    host.wait_status("unavailable", "succeed", 10).await;
}

#[tokio::test]
async fn unreachable_grpc_server_is_retried() {
    let host = Host::start().await;
    let mut dtm = client(&host).await;
    let server = format!("127.0.0.1:{}", common::free_port());
    let steps = json!([{"action": format!("{server}/busi.Busi/TransOut"), "compensate": ""}]);
    let request = DtmRequest {
        gid: "down".into(),
        trans_type: "saga".into(),
        steps: steps.to_string(),
        bin_payloads: vec![vec![]],
        ..Default::default()
    };
    dtm.submit(request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let q = host.query("down").await;
    assert_eq!(
        (
            q["transaction"]["status"].as_str(),
            q["transaction"]["next_cron_interval"].as_i64()
        ),
        (Some("submitted"), Some(20))
    );
}

#[tokio::test]
async fn saga_mixing_http_and_grpc_branches() {
    let (host, busi, http) = (
        Host::start().await,
        GrpcBusi::start().await,
        Busi::start().await,
    );
    let mut dtm = client(&host).await;
    let steps = json!([
        {"action": busi.url("/busi.Busi/TransOut"), "compensate": busi.url("/busi.Busi/TransOutRevert")},
        {"action": http.url("/TransIn"), "compensate": http.url("/TransInRevert")},
    ]);
    let request = DtmRequest {
        gid: "mixed".into(),
        trans_type: "saga".into(),
        steps: steps.to_string(),
        bin_payloads: vec![b"{\"amount\":30}".to_vec(), b"{\"amount\":30}".to_vec()],
        trans_options: Some(DtmTransOptions {
            wait_result: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    dtm.submit(request).await.unwrap();
    assert_eq!(busi.calls("/busi.Busi/TransOut").len(), 1);
    let http_call = &http.calls("/TransIn")[0];
    assert_eq!(
        (
            http_call.body.as_str(),
            http_call.query["trans_type"].as_str()
        ),
        ("{\"amount\":30}", "saga")
    );
}

#[tokio::test]
async fn msg_tcc_and_xa_over_grpc() {
    let (host, busi) = (Host::start().await, GrpcBusi::start().await);
    let mut dtm = client(&host).await;
    let msg = DtmRequest {
        gid: "msg".into(),
        trans_type: "msg".into(),
        steps: json!([{"action": busi.url("/busi.Busi/TransIn")}]).to_string(),
        bin_payloads: vec![vec![1, 2, 3]],
        query_prepared: busi.url("/busi.Busi/QueryPrepared"),
        trans_options: Some(DtmTransOptions {
            wait_result: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    dtm.prepare(msg.clone()).await.unwrap();
    dtm.submit(msg).await.unwrap();
    assert_eq!(host.status("msg").await, "succeed");

    for (trans_type, keys) in [("tcc", ["confirm", "cancel"]), ("xa", ["url", "url"])] {
        let gid = format!("{trans_type}-grpc");
        let request = DtmRequest {
            gid: gid.clone(),
            trans_type: trans_type.into(),
            trans_options: Some(DtmTransOptions {
                wait_result: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        dtm.prepare(request.clone()).await.unwrap();
        let data = HashMap::from([
            (
                keys[0].to_owned(),
                busi.url(&format!("/busi.Busi/{trans_type}Commit")),
            ),
            (
                keys[1].to_owned(),
                busi.url(&format!("/busi.Busi/{trans_type}Commit")),
            ),
        ]);
        let branch = DtmBranchRequest {
            gid: gid.clone(),
            trans_type: trans_type.into(),
            branch_id: "01".into(),
            data,
            busi_payload: vec![9],
            ..Default::default()
        };
        dtm.register_branch(branch).await.unwrap();
        dtm.submit(request).await.unwrap();
        assert_eq!(
            host.branch_statuses(&gid).await,
            ["prepared", "succeed"],
            "{trans_type}"
        );
        let call = &busi.calls(&format!("/busi.Busi/{trans_type}Commit"))[0];
        assert_eq!(call.body, vec![9]);
    }
}

#[tokio::test]
async fn grpc_errors_map_to_dtm_codes() {
    let host = Host::start().await;
    let mut dtm = client(&host).await;
    let no_type = dtm
        .submit(DtmRequest {
            gid: "X".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_type.code(), Code::InvalidArgument);
    let empty_gid = dtm
        .prepare(DtmRequest {
            trans_type: "tcc".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(empty_gid.code(), Code::InvalidArgument);
    let bad_steps = dtm
        .submit(DtmRequest {
            gid: "s".into(),
            trans_type: "saga".into(),
            steps: "{".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_steps.code(), Code::InvalidArgument);

    let done = DtmRequest {
        gid: "done".into(),
        trans_type: "tcc".into(),
        trans_options: Some(DtmTransOptions {
            wait_result: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    dtm.prepare(done.clone()).await.unwrap();
    dtm.submit(done.clone()).await.unwrap();
    let again = dtm.prepare(done).await.unwrap_err();
    assert_eq!(again.code(), Code::Aborted);
    assert!(again.message().ends_with("FAILURE"), "{}", again.message());

    let aborted = DtmRequest {
        gid: "aborted-tcc".into(),
        trans_type: "tcc".into(),
        rollback_reason: "try failed".into(),
        trans_options: Some(DtmTransOptions {
            wait_result: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    dtm.prepare(aborted.clone()).await.unwrap();
    dtm.abort(aborted.clone()).await.unwrap();
    let q = host.query("aborted-tcc").await;
    assert_eq!(
        (
            q["transaction"]["status"].as_str(),
            q["transaction"]["rollback_reason"].as_str()
        ),
        (Some("failed"), Some("try failed"))
    );
    assert_eq!(dtm.abort(aborted).await.unwrap_err().code(), Code::Aborted);
    let oversized = DtmRequest {
        gid: "big".into(),
        trans_type: "msg".into(),
        bin_payloads: vec![vec![0; 5 * 1024 * 1024]],
        ..Default::default()
    };
    let too_big = dtm.submit(oversized).await.unwrap_err();
    assert!(
        matches!(
            too_big.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{too_big:?}"
    );
    assert_eq!(
        host.query("big").await["transaction"],
        serde_json::Value::Null
    );

    let unknown = dtm
        .register_branch(DtmBranchRequest {
            gid: "g".into(),
            trans_type: "nope".into(),
            branch_id: "01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::Unknown, "unknow trans type: nope")
    );

    let topic = DtmTopicRequest {
        topic: "t".into(),
        url: "http://x/y".into(),
        remark: String::new(),
    };
    dtm.subscribe(topic.clone()).await.unwrap();
    let duplicate = dtm.subscribe(topic.clone()).await.unwrap_err();
    assert_eq!(
        (duplicate.code(), duplicate.message()),
        (Code::Unknown, "this url exists")
    );
    dtm.unsubscribe(topic.clone()).await.unwrap();
    dtm.delete_topic(topic.clone()).await.unwrap();
    let missing = dtm.delete_topic(topic).await.unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (Code::Unknown, "storage: NotFound")
    );
}

#[tokio::test]
async fn server_reflection_lists_the_dtm_service() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let host = Host::start().await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", host.grpc_port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}")
    };
    assert!(
        list.service.iter().any(|s| s.name == "dtmgimp.Dtm"),
        "{list:?}"
    );
}

#[tokio::test]
async fn workflow_over_grpc_is_resumed_with_workflow_data() {
    let (mut host, busi) = (Host::start().await, GrpcBusi::start().await);
    let mut dtm = client(&host).await;
    let input = b"transfer 30".to_vec();
    let custom = json!({"name": "wf_transfer", "data": base64_encode(&input)}).to_string();
    let request = DtmRequest {
        gid: "wf-grpc".into(),
        trans_type: "workflow".into(),
        customed_data: custom,
        query_prepared: busi.url("/workflow.Workflow/Execute"),
        ..Default::default()
    };
    let reply = dtm
        .prepare_workflow(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.transaction.unwrap().status, "prepared");
    assert!(reply.progresses.is_empty());
    host.kill9();
    host.restart().await;
    host.advance_clock(15).await;
    for _ in 0..200 {
        if !busi.calls("/workflow.Workflow/Execute").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let callback = &busi.calls("/workflow.Workflow/Execute")[0];
    let data = dtm_host::proto::workflow::WorkflowData::decode(callback.body.as_slice()).unwrap();
    assert_eq!(data.data, input);
    assert_eq!(
        (
            callback.metadata["dtm-op"].as_str(),
            callback.metadata["dtm-branch_id"].as_str()
        ),
        ("wf_transfer", "00")
    );
    let mut dtm = client(&host).await;
    let progress = DtmBranchRequest {
        gid: "wf-grpc".into(),
        trans_type: "workflow".into(),
        branch_id: "01".into(),
        data: HashMap::from([
            ("op".to_owned(), "action".to_owned()),
            ("status".to_owned(), "succeed".to_owned()),
        ]),
        busi_payload: b"ok".to_vec(),
        ..Default::default()
    };
    dtm.register_branch(progress).await.unwrap();
    let result = base64_encode(b"done");
    let submit = DtmRequest {
        req_extra: HashMap::from([
            ("status".to_owned(), "succeed".to_owned()),
            ("result".to_owned(), result.clone()),
        ]),
        ..request.clone()
    };
    dtm.submit(submit).await.unwrap();
    let reply = dtm.prepare_workflow(request).await.unwrap().into_inner();
    let transaction = reply.transaction.unwrap();
    assert_eq!(
        (transaction.status.as_str(), transaction.result.as_str()),
        ("succeed", result.as_str())
    );
    assert_eq!(reply.progresses[0].bin_data, b"ok");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

mod bad_messages {
    use super::*;
    use dtm_host::call::grpc::RawCodec;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    #[derive(Debug, Clone)]
    enum Bad {
        Trans(&'static str, DtmRequest),
        Branch(DtmBranchRequest),
        Garbage(&'static str, Vec<u8>),
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z0-9_]{1,24}",
            1 => Just(String::new()),
            1 => "[a-z]{129,200}",
            1 => "[a-z]{1,4}[\u{0}\n\u{7f}][a-z]{1,4}",
        ]
    }

    fn steps() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("null".to_owned()),
            Just(r#"[{"action":"127.0.0.1:1/busi.Busi/A","compensate":""}]"#.to_owned()),
            Just(r#"[{"action":"no-slash","compensate":""}]"#.to_owned()),
            Just(r#"[{"action":"etcd://x/busi.Busi/A"}]"#.to_owned()),
            ".{0,30}",
        ]
    }

    fn request() -> impl Strategy<Value = Bad> {
        let trans_type =
            prop::sample::select(vec!["saga", "msg", "tcc", "xa", "workflow", "", "nope"]);
        let method = prop::sample::select(vec!["Submit", "Prepare", "Abort", "PrepareWorkflow"]);
        let trans = (
            method,
            text(),
            trans_type.clone(),
            steps(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..3),
            any::<bool>(),
            ".{0,20}",
        )
            .prop_map(
                |(method, gid, trans_type, steps, bin_payloads, wait_result, customed_data)| {
                    Bad::Trans(
                        method,
                        DtmRequest {
                            gid,
                            trans_type: trans_type.into(),
                            steps,
                            bin_payloads,
                            customed_data,
                            trans_options: Some(DtmTransOptions {
                                wait_result,
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    )
                },
            );
        let branch = (text(), trans_type, text()).prop_map(|(gid, trans_type, branch_id)| {
            Bad::Branch(DtmBranchRequest {
                gid,
                trans_type: trans_type.into(),
                branch_id,
                ..Default::default()
            })
        });
        let rpc = prop::sample::select(vec![
            "Submit",
            "Prepare",
            "Abort",
            "RegisterBranch",
            "PrepareWorkflow",
            "Subscribe",
            "DeleteTopic",
        ]);
        let garbage = (rpc, prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(m, bytes)| Bad::Garbage(m, bytes));
        prop_oneof![3 => trans, 1 => branch, 2 => garbage]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_bad_grpc_messages_store_nothing_and_break_nothing() {
        let (host, busi) = (Host::start().await, GrpcBusi::start().await);
        let mut dtm = client(&host).await;
        dtm.submit(saga("intact", &busi, true)).await.unwrap();
        let before = host.query("intact").await;
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", host.grpc_port))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut raw = tonic::client::Grpc::new(channel);

        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let strategy = request();
        let (mut refused, mut garbage) = (Vec::new(), 0);
        for _ in 0..1200 {
            let bad = strategy.new_tree(&mut runner).unwrap().current();
            let outcome = match bad.clone() {
                Bad::Trans("Submit", r) => dtm.submit(r).await.map(|_| ()),
                Bad::Trans("Prepare", r) => dtm.prepare(r).await.map(|_| ()),
                Bad::Trans("Abort", r) => dtm.abort(r).await.map(|_| ()),
                Bad::Trans(_, r) => dtm.prepare_workflow(r).await.map(|_| ()),
                Bad::Branch(r) => dtm.register_branch(r).await.map(|_| ()),
                Bad::Garbage(method, bytes) => {
                    raw.ready().await.unwrap();
                    let path = format!("/dtmgimp.Dtm/{method}").parse().unwrap();
                    raw.unary(tonic::Request::new(bytes), path, RawCodec)
                        .await
                        .map(|_| ())
                }
            };
            let Err(status) = outcome else { continue };
            // Internal is dtm's code for what it raises as a panic (an unknown gid, a step
            // without its payload); any other Internal would be a failure of dtm-host itself.
            if status.code() == Code::Internal {
                let message = status.message();
                assert!(
                    message.starts_with("no TransGlobal with gid")
                        || message.contains("payloads: give one payload per step"),
                    "{bad:?} → {status:?}"
                );
            }
            assert!(!status.message().is_empty(), "{bad:?} → {status:?}");
            match (&bad, status.code()) {
                (Bad::Garbage(..), Code::InvalidArgument) => garbage += 1,
                (
                    Bad::Trans("Submit" | "Prepare" | "PrepareWorkflow", r),
                    Code::InvalidArgument,
                ) if !r.gid.is_empty() => refused.push(r.gid.clone()),
                _ => {}
            }
        }
        assert!(
            refused.len() > 50 && garbage > 50,
            "{} refused, {garbage} garbage",
            refused.len()
        );
        for gid in refused {
            let q = host
                .http
                .get(host.api("/query"))
                .query(&[("gid", &gid)])
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap();
            assert_eq!(
                q["transaction"],
                serde_json::Value::Null,
                "refused {gid} was stored"
            );
        }
        assert!(dtm.new_gid(()).await.is_ok());
        assert_eq!(host.query("intact").await, before);
    }
}
