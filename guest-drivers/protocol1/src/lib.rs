//! `dtm-driver-protocol1` (drivers.md §4.2): scheme `protocol1`; a URL without `//` splits at
//! its first slash, any other by its first path segment; `protocol1:///host:port` and
//! `protocol1://host:port` resolve to `host:port`. It registers nothing.

wit_bindgen::generate!({ world: "driver", path: "../../wit" });

struct Protocol1;

impl Guest for Protocol1 {
    fn name() -> String {
        "dtm-driver-protocol1".into()
    }

    fn activate() -> Activation {
        Activation {
            schemes: vec!["protocol1".into()],
            rewrites_http: false,
            rewrites_grpc: false,
        }
    }

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        let (server, method) = gourl::split_server_method(&uri)?;
        Ok(ServerMethod { server, method })
    }

    fn register_service(_target: String, _endpoint: String) -> Result<Registration, String> {
        Ok(Registration {
            state: String::new(),
            keep_alive_ms: 0,
        })
    }

    fn keep_alive(state: String) -> Result<Registration, String> {
        Ok(Registration {
            state,
            keep_alive_ms: 0,
        })
    }

    fn deregister(_state: String) -> Result<(), String> {
        Ok(())
    }

    /// The dial target's endpoint: the path without its leading `/`, else the host.
    fn resolve(server: String, _registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server)?;
        let endpoint = match url.path.strip_prefix('/').unwrap_or(&url.path) {
            "" => url.host.into_owned(),
            path => path.to_owned(),
        };
        if endpoint.is_empty() {
            return Err(format!("'{server}' names no endpoint"));
        }
        Ok(Resolution {
            endpoints: vec![endpoint],
            refresh_ms: 0,
        })
    }

    fn rewrite_http(_url: String, _registry: String) -> Result<Option<HttpTarget>, String> {
        Ok(None)
    }

    fn rewrite_grpc(
        _server: String,
        _method: String,
        _payload: Vec<u8>,
    ) -> Result<Option<GrpcCall>, String> {
        Ok(None)
    }
}

export!(Protocol1);
