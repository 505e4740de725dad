//! `dtm-driver-protocol1` (docs/drivers.md §4.2): scheme `protocol1`; a URL without `//` splits at
//! its first slash, any other by its first path segment; `protocol1:///host:port` and
//! `protocol1://host:port` resolve to `host:port`. It registers nothing.

wit_bindgen::generate!({ world: "driver", path: "../../wit" });

struct Protocol1;

impl Guest for Protocol1 {
    fn name() -> String {
        "dtm-driver-protocol1".into()
    }

    regkit::no_call_hooks!("protocol1");

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        let (server, method) = gourl::split_server_method(&uri)?;
        Ok(ServerMethod { server, method })
    }

    regkit::registers_nothing!();

    /// The dial target's endpoint: the path without its leading `/`, else the host.
    fn resolve(server: String, _registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server)?;
        let endpoint = match url.path_name() {
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
}

export!(Protocol1);
