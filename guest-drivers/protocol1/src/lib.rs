//! `dtm-driver-protocol1` (docs/drivers.md §4.2): scheme `protocol1`; a URL without `//` splits at
//! its first slash, any other by its first path segment; `protocol1:///host:port` and
//! `protocol1://host:port` resolve to `host:port`. It registers nothing.

use sdk::{Resolution, ServerMethod};

struct Protocol1;

impl sdk::Driver for Protocol1 {
    const NAME: &'static str = "dtm-driver-protocol1";
    const SCHEMES: &'static [&'static str] = &["protocol1"];
    type Registrar = sdk::RegistersNothing;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        gourl::split_server_method(&uri).map(ServerMethod::from)
    }

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

sdk::export_driver!(Protocol1);
