//! `dtm-driver-dapr` (docs/drivers.md §4.7): branches reach their services through a Dapr sidecar.
//! A branch URL `<schema>://<host>/<app id>/<method name>` names the sidecar (`DAPR_ENV` for
//! `localhost` and the port Dapr gives the app), the target app and what to call there:
//! `daprhttp` invokes through the sidecar's invocation API, `daprphttp` and `daprpgrpc` use the
//! sidecar as a proxy with a `dapr-app-id` header, `daprgrpc` wraps the call in the sidecar's
//! `InvokeService`. It registers nothing: Dapr does its own name resolution.

mod invoke;

use sdk::{GrpcCall, HttpTarget, Resolution, ServerMethod};

const SCHEMA_HTTP: &str = "daprhttp";
const SCHEMA_PROXIED_HTTP: &str = "daprphttp";
const SCHEMA_GRPC: &str = "daprgrpc";
const SCHEMA_PROXIED_GRPC: &str = "daprpgrpc";
const APP_ID: &str = "dapr-app-id";
/// The sidecar method `daprgrpc` calls are rewritten to.
const INVOKE_SERVICE: &str = "/dapr.proto.runtime.v1.Dapr/InvokeService";

/// A branch URL split by the driver's grammar.
#[derive(Debug, PartialEq, Eq)]
struct DaprAddr<'a> {
    schema: &'a str,
    host: String,
    app_id: &'a str,
    /// What follows the app id, without the leading `/` (query text included).
    method_name: String,
}

/// The sidecar's address for `host`: `DAPR_ENV` stands for `localhost` and the port Dapr
/// gives the app in its environment (the gRPC one for the gRPC schemas). As in Go, an unset
/// port leaves `localhost:`.
fn dapr_host(schema: &str, host: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    if host != "DAPR_ENV" {
        return host.to_owned();
    }
    let port = if schema == SCHEMA_GRPC || schema == SCHEMA_PROXIED_GRPC {
        "DAPR_GRPC_PORT"
    } else {
        "DAPR_HTTP_PORT"
    };
    format!("localhost:{}", env(port).unwrap_or_default())
}

/// Go's `ParseDaprUrl`: segments are positional after splitting on `/`. `Ok(None)` when the
/// first segment is no `<schema>:`; an error when it is but the URL is too short to name an
/// app.
fn parse<'a>(
    uri: &'a str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<DaprAddr<'a>>, String> {
    let segments: Vec<&str> = uri.split('/').collect();
    let Some(schema) = segments[0].strip_suffix(':') else {
        return Ok(None);
    };
    if segments.len() < 4 {
        return Err(format!(
            "dapr url format, should be <schema>://<host>/<dapr-app-id>/<method-name> but got: {uri}"
        ));
    }
    Ok(Some(DaprAddr {
        schema,
        host: dapr_host(schema, segments[2], env),
        app_id: segments[3],
        method_name: segments[4..].join("/"),
    }))
}

/// ParseServerMethod: never fails, as in Go, where a URL too short for the grammar falls back
/// to splitting at its first `/`.
fn split(uri: &str, env: &dyn Fn(&str) -> Option<String>) -> ServerMethod {
    match parse(uri, env) {
        Ok(Some(addr)) => ServerMethod {
            server: format!("{}://{}/{}", addr.schema, addr.host, addr.app_id),
            method: format!("/{}", addr.method_name),
        },
        Ok(None) | Err(_) => {
            let (server, method) = uri.split_once('/').unwrap_or((uri, ""));
            ServerMethod {
                server: server.to_owned(),
                method: format!("/{method}"),
            }
        }
    }
}

/// dtm's HTTP hook: `daprphttp` goes to the sidecar as a proxy, `daprhttp` through its
/// invocation API; other URLs go unchanged, but one the grammar rejects fails the call.
fn rewrite_url(
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<HttpTarget>, String> {
    let Some(addr) = parse(url, env)? else {
        return Ok(None);
    };
    Ok(match addr.schema {
        SCHEMA_PROXIED_HTTP => Some(HttpTarget {
            url: format!("http://{}/{}", addr.host, addr.method_name),
            headers: vec![(APP_ID.into(), addr.app_id.into())],
        }),
        SCHEMA_HTTP => Some(HttpTarget {
            url: format!(
                "http://{}/v1.0/invoke/{}/method/{}",
                addr.host, addr.app_id, addr.method_name
            ),
            headers: vec![],
        }),
        _ => None,
    })
}

/// dtm's gRPC interceptor, given the server the call dials.
fn rewrite_call(
    server: &str,
    method: String,
    payload: Vec<u8>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<GrpcCall>, String> {
    let Some(addr) = parse(server, env)? else {
        return Ok(None);
    };
    Ok(match addr.schema {
        SCHEMA_PROXIED_GRPC => Some(GrpcCall {
            method,
            payload,
            metadata: vec![(APP_ID.into(), addr.app_id.into())],
        }),
        SCHEMA_GRPC => {
            let invoked = method.strip_prefix('/').unwrap_or(&method);
            Some(GrpcCall {
                method: INVOKE_SERVICE.into(),
                payload: invoke::retarget(&payload, addr.app_id, invoked)?,
                metadata: vec![],
            })
        }
        _ => None,
    })
}

struct Dapr;

impl sdk::Driver for Dapr {
    const NAME: &'static str = "dtm-driver-dapr";
    const SCHEMES: &'static [&'static str] = &[SCHEMA_GRPC, SCHEMA_PROXIED_GRPC];
    const REWRITES_HTTP: bool = true;
    const REWRITES_GRPC: bool = true;
    type Registrar = sdk::RegistersNothing;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        Ok(split(&uri, &sdk::host::env))
    }

    /// The sidecar: the server's host, once and for good.
    fn resolve(server: String, _registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server)?;
        let host = dapr_host(SCHEMA_GRPC, &url.host, &sdk::host::env);
        if host.is_empty() {
            return Err(format!("'{server}' names no dapr sidecar"));
        }
        Ok(Resolution {
            endpoints: vec![host],
            refresh_ms: 0,
        })
    }

    fn rewrite_http(url: String, _registry: String) -> Result<Option<HttpTarget>, String> {
        rewrite_url(&url, &sdk::host::env)
    }

    fn rewrite_grpc(
        server: String,
        method: String,
        payload: Vec<u8>,
    ) -> Result<Option<GrpcCall>, String> {
        rewrite_call(&server, method, payload, &sdk::host::env)
    }
}

sdk::export_driver!(Dapr);

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(name: &str) -> Option<String> {
        match name {
            "DAPR_GRPC_PORT" => Some("50001".into()),
            "DAPR_HTTP_PORT" => Some("3500".into()),
            _ => None,
        }
    }

    fn split_pair(uri: &str) -> (String, String) {
        let sm = split(uri, &ports);
        (sm.server, sm.method)
    }

    #[test]
    fn splits_by_segment_position_and_never_fails() {
        let cases = [
            (
                "daprgrpc://DAPR_ENV/app/Method",
                "daprgrpc://localhost:50001/app",
                "/Method",
            ),
            (
                "daprhttp://DAPR_ENV/app/a/b?x=1",
                "daprhttp://localhost:3500/app",
                "/a/b?x=1",
            ),
            ("daprgrpc://h/app", "daprgrpc://h/app", "/"),
            ("daprgrpc://localhost", "daprgrpc:", "//localhost"),
            ("localhost", "localhost", "/"),
            ("", "", "/"),
            ("daprgrpc:/a/b/c", "daprgrpc://b/c", "/"),
        ];
        for (uri, server, method) in cases {
            assert_eq!(split_pair(uri), (server.into(), method.into()), "{uri}");
        }
        let unset = split("daprgrpc://DAPR_ENV/app/M", &|_: &str| None);
        assert_eq!(unset.server, "daprgrpc://localhost:/app");
    }

    #[test]
    fn http_urls_go_through_the_sidecar() {
        let proxied = rewrite_url("daprphttp://DAPR_ENV/app/api/TransIn?a=1", &ports)
            .unwrap()
            .unwrap();
        assert_eq!(proxied.url, "http://localhost:3500/api/TransIn?a=1");
        assert_eq!(proxied.headers, [("dapr-app-id".into(), "app".into())]);
        let invoked = rewrite_url("daprhttp://h:1/app/api/TransIn", &ports)
            .unwrap()
            .unwrap();
        assert_eq!(invoked.url, "http://h:1/v1.0/invoke/app/method/api/TransIn");
        assert!(invoked.headers.is_empty());
        assert!(matches!(
            rewrite_url("http://h:1/api/TransIn", &ports),
            Ok(None)
        ));
        assert!(matches!(rewrite_url("h:1/api", &ports), Ok(None)));
        assert!(
            rewrite_url("http://h:1", &ports).is_err(),
            "too short for the grammar: Go fails the request"
        );
    }

    #[test]
    fn grpc_calls_are_proxied_or_wrapped() {
        let proxied = rewrite_call(
            "daprpgrpc://localhost:50001/app",
            "/p.S/M".into(),
            vec![7],
            &ports,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (proxied.method.as_str(), proxied.payload.as_slice()),
            ("/p.S/M", &[7][..])
        );
        assert_eq!(proxied.metadata, [("dapr-app-id".into(), "app".into())]);
        let wrapped = rewrite_call(
            "daprgrpc://localhost:50001/app",
            "/M".into(),
            vec![],
            &ports,
        )
        .unwrap()
        .unwrap();
        assert_eq!(wrapped.method, INVOKE_SERVICE);
        assert_eq!(wrapped.payload, b"\x0a\x03app\x1a\x03\x0a\x01M");
        assert!(wrapped.metadata.is_empty());
        assert!(matches!(
            rewrite_call("127.0.0.1:5/x", "/M".into(), vec![], &ports),
            Ok(None)
        ));
        assert!(rewrite_call("daprgrpc:", "/M".into(), vec![], &ports).is_err());
        assert!(
            rewrite_call("daprgrpc://h/app", "/M".into(), vec![0x0a, 0x05], &ports).is_err(),
            "a payload that is no InvokeServiceRequest fails the call"
        );
    }
}
