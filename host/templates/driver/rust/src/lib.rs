//! `{{name}}`: a dtm-host microservice driver on the Rust guest SDK (`vendor/sdk`); see
//! README.md and wit/driver.wit.

use sdk::{Resolution, ServerMethod};

struct ThisDriver;

impl sdk::Driver for ThisDriver {
    const NAME: &'static str = "{{name}}";
    const SCHEMES: &'static [&'static str] = &["{{scheme}}"];
    // Announces the coordinator nowhere; implement sdk::Registrar to register it.
    type Registrar = sdk::RegistersNothing;

    /// Splits a branch URL into the server to dial and the gRPC method.
    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        // TODO: the parse rule; vectors.json lists what it must return.
        Err(format!("{uri}: parse-server-method is not written yet"))
    }

    /// `scheme:///host:port` or `scheme://host:port`: dial `host:port`.
    fn resolve(server: String, _registry: String) -> Result<Resolution, String> {
        let rest = server.split_once("://").map_or(server.as_str(), |(_, r)| r);
        let endpoint = rest.trim_start_matches('/').split('/').next().unwrap_or("");
        if endpoint.is_empty() {
            return Err(format!("'{server}' names no endpoint"));
        }
        Ok(Resolution {
            endpoints: vec![endpoint.into()],
            refresh_ms: 0,
        })
    }
}

sdk::export_driver!(ThisDriver);
