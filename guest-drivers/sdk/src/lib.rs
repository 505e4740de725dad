//! The Rust guest SDK for dtm-host drivers: the bindings of `wit/driver.wit`, generated once
//! here, and what a driver crate needs on top of them. A driver implements [`Driver`] (its name,
//! schemes and call hooks as constants, how it splits and resolves URLs, the [`Registrar`] that
//! registers the coordinator) and exports itself with [`export_driver!`]:
//!
//! ```no_run
//! struct Mine;
//!
//! impl sdk::Driver for Mine {
//!     const NAME: &'static str = "dtm-driver-mine";
//!     type Registrar = sdk::RegistersNothing;
//!
//!     /// `host:port/package.Service/Method`
//!     fn parse_server_method(uri: String) -> Result<sdk::ServerMethod, String> {
//!         let slash = uri.find('/').ok_or("no method")?;
//!         let (server, method) = uri.split_at(slash);
//!         Ok(sdk::ServerMethod::from((server.to_owned(), method.to_owned())))
//!     }
//! }
//!
//! sdk::export_driver!(Mine);
//! ```
//!
//! Registry clients (`regkit`) reach the network through [`Host`], so that they can be unit-tested
//! natively against a fake one; in a driver they are given [`WitHost`], the host's imports.

/// The bindings wit-bindgen generates for the world `driver`. The export macro is public so
/// that [`export_driver!`] can expand it in the driver's crate, which names every type through
/// `$crate`: nothing here depends on how the driver's crate is laid out. The types compare
/// (`PartialEq`, `Eq`), for tests.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "driver",
        path: "../../wit",
        pub_export_macro: true,
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::dtm::driver::host;
use bindings::dtm::driver::types::Activation;
pub use bindings::dtm::driver::types::{
    GrpcCall, HttpRequest, HttpTarget, LogLevel, Registration, Resolution, ServerMethod,
};

/// Exports `$driver`, a type implementing [`Driver`], as the component's world `driver`. Once
/// per driver crate.
#[macro_export]
macro_rules! export_driver {
    ($driver:ident) => {
        $crate::bindings::export!($driver with_types_in $crate::bindings);
    };
}

/// A driver: the exports of `wit/driver.wit` whose documentation there applies, with defaults
/// for what a driver may not need. [`export_driver!`] exports it.
pub trait Driver {
    /// `name`: dtm's name for the driver, e.g. `dtm-driver-gozero`.
    const NAME: &'static str;
    /// The schemes of `activate`: those whose servers the host resolves through
    /// [`Driver::resolve`].
    const SCHEMES: &'static [&'static str] = &[];
    /// Whether every HTTP branch call goes through [`Driver::rewrite_http`] (`activate`).
    const REWRITES_HTTP: bool = false;
    /// Whether every gRPC branch call goes through [`Driver::rewrite_grpc`] (`activate`).
    const REWRITES_GRPC: bool = false;
    /// What registers the coordinator: [`RegistersNothing`], or a type implementing
    /// [`Registrar`] (often the driver itself).
    type Registrar: Registrar;

    /// `parse-server-method`.
    fn parse_server_method(uri: String) -> Result<ServerMethod, String>;

    /// `resolve`. The host calls it only for servers of one of [`Driver::SCHEMES`], so a driver
    /// without any keeps this error.
    fn resolve(server: String, _registry: String) -> Result<Resolution, String> {
        Err(format!(
            "{} resolves no gRPC servers: '{server}'",
            Self::NAME
        ))
    }

    /// `rewrite-http`, called only when [`Driver::REWRITES_HTTP`] is set: by default the call
    /// goes as it is.
    fn rewrite_http(_url: String, _registry: String) -> Result<Option<HttpTarget>, String> {
        Ok(None)
    }

    /// `rewrite-grpc`, called only when [`Driver::REWRITES_GRPC`] is set: by default the call
    /// goes as it is.
    fn rewrite_grpc(
        _server: String,
        _method: String,
        _payload: Vec<u8>,
    ) -> Result<Option<GrpcCall>, String> {
        Ok(None)
    }
}

/// How a driver registers the coordinator: `register-service`, `keep-alive` and `deregister`.
/// Each default is what registering nothing means: an empty state, never renewed.
pub trait Registrar {
    fn register_service(_target: String, _endpoint: String) -> Result<Registration, String> {
        Ok(Registration::nothing())
    }

    /// By default the state goes back unchanged, never to be renewed again.
    fn keep_alive(state: String) -> Result<Registration, String> {
        Ok(Registration {
            state,
            keep_alive_ms: 0,
        })
    }

    fn deregister(_state: String) -> Result<(), String> {
        Ok(())
    }
}

/// The [`Registrar`] of a driver that never registers the coordinator.
pub struct RegistersNothing;

impl Registrar for RegistersNothing {}

impl Registration {
    /// The registration of nothing (for an empty target, say): an empty state, never renewed.
    pub fn nothing() -> Self {
        Registration {
            state: String::new(),
            keep_alive_ms: 0,
        }
    }
}

/// `(server, method)`, as `gourl`'s splits return them.
impl From<(String, String)> for ServerMethod {
    fn from((server, method): (String, String)) -> Self {
        ServerMethod { server, method }
    }
}

impl<D: Driver> bindings::Guest for D {
    fn name() -> String {
        D::NAME.into()
    }

    fn activate() -> Activation {
        Activation {
            schemes: D::SCHEMES.iter().map(|&scheme| scheme.into()).collect(),
            rewrites_http: D::REWRITES_HTTP,
            rewrites_grpc: D::REWRITES_GRPC,
        }
    }

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        D::parse_server_method(uri)
    }

    fn register_service(target: String, endpoint: String) -> Result<Registration, String> {
        D::Registrar::register_service(target, endpoint)
    }

    fn keep_alive(state: String) -> Result<Registration, String> {
        D::Registrar::keep_alive(state)
    }

    fn deregister(state: String) -> Result<(), String> {
        D::Registrar::deregister(state)
    }

    fn resolve(server: String, registry: String) -> Result<Resolution, String> {
        D::resolve(server, registry)
    }

    fn rewrite_http(url: String, registry: String) -> Result<Option<HttpTarget>, String> {
        D::rewrite_http(url, registry)
    }

    fn rewrite_grpc(
        server: String,
        method: String,
        payload: Vec<u8>,
    ) -> Result<Option<GrpcCall>, String> {
        D::rewrite_grpc(server, method, payload)
    }
}

/// An HTTP request the host sends for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("unexpected answer ({e}): {}", self.text()))
    }
}

/// What a driver may ask of the host (the interface `host` of `wit/driver.wit`), as registry
/// clients use it.
pub trait Host {
    /// Sends a request to an allow-listed registry address.
    fn send(&self, request: Request) -> Result<Response, String>;
    /// One of the few environment variables the host passes on (`POD_IP`, `DAPR_*_PORT`).
    fn env(&self, name: &str) -> Option<String>;
    /// The first non-loopback IPv4 address of an interface that is up.
    fn local_ipv4(&self) -> Option<String>;
}

/// The [`Host`] of a driver at work: the host's imports.
pub struct WitHost;

impl Host for WitHost {
    fn send(&self, request: Request) -> Result<Response, String> {
        let answer = host::send_http(&HttpRequest {
            method: request.method.into(),
            url: request.url,
            headers: request.headers,
            body: request.body,
        })?;
        Ok(Response {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        })
    }

    fn env(&self, name: &str) -> Option<String> {
        host::env(name)
    }

    fn local_ipv4(&self) -> Option<String> {
        host::local_ipv4()
    }
}

#[cfg(test)]
mod tests {
    use super::bindings::Guest;
    use super::*;

    /// A driver that takes every default.
    struct Plain;

    impl Driver for Plain {
        const NAME: &'static str = "dtm-driver-plain";
        type Registrar = RegistersNothing;

        fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
            Ok(ServerMethod::from((uri, "/m".to_owned())))
        }
    }

    /// One that claims schemes and both hooks.
    struct Hooked;

    impl Driver for Hooked {
        const NAME: &'static str = "dtm-driver-hooked";
        const SCHEMES: &'static [&'static str] = &["a", "b"];
        const REWRITES_HTTP: bool = true;
        const REWRITES_GRPC: bool = true;
        type Registrar = RegistersNothing;

        fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
            Err(uri)
        }
    }

    #[test]
    fn the_constants_are_the_name_and_the_activation() {
        assert_eq!(<Plain as Guest>::name(), "dtm-driver-plain");
        let plain = <Plain as Guest>::activate();
        assert!(plain.schemes.is_empty());
        assert!(!plain.rewrites_http && !plain.rewrites_grpc);
        let hooked = <Hooked as Guest>::activate();
        assert_eq!(hooked.schemes, ["a", "b"]);
        assert!(hooked.rewrites_http && hooked.rewrites_grpc);
        let split = ServerMethod {
            server: "s".into(),
            method: "/m".into(),
        };
        assert_eq!(<Plain as Guest>::parse_server_method("s".into()), Ok(split));
        assert_eq!(
            <Hooked as Guest>::parse_server_method("x".into()),
            Err("x".into())
        );
    }

    #[test]
    fn defaults_register_nothing_resolve_nothing_and_rewrite_nothing() {
        assert_eq!(
            <Plain as Guest>::register_service("etcd://h/k".into(), "e:1".into()),
            Ok(Registration::nothing())
        );
        let kept = Registration {
            state: "state".into(),
            keep_alive_ms: 0,
        };
        assert_eq!(<Plain as Guest>::keep_alive("state".into()), Ok(kept));
        assert_eq!(<Plain as Guest>::deregister("state".into()), Ok(()));
        assert_eq!(
            <Plain as Guest>::resolve("x://s".into(), String::new()).unwrap_err(),
            "dtm-driver-plain resolves no gRPC servers: 'x://s'"
        );
        assert_eq!(
            <Hooked as Guest>::rewrite_http("u".into(), String::new()),
            Ok(None)
        );
        assert_eq!(
            <Hooked as Guest>::rewrite_grpc("s".into(), "/m".into(), vec![1]),
            Ok(None)
        );
    }
}
