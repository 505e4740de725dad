//! The built-in `default` driver (docs/drivers.md §4.1): servers are `host:port`; a URL with a
//! custom scheme needs a driver that knows it.

use async_trait::async_trait;

use super::{
    Activation, Driver, DriverError, GrpcCall, HttpTarget, Registration, Resolution, ServerMethod,
};

#[derive(Debug, Default)]
pub struct DefaultDriver {
    activation: Activation,
}

#[async_trait]
impl Driver for DefaultDriver {
    fn name(&self) -> &str {
        "default"
    }

    fn activation(&self) -> &Activation {
        &self.activation
    }

    fn parse_server_method(&self, uri: &str) -> Result<ServerMethod, DriverError> {
        let Some(slash) = uri.find('/') else {
            return Err(DriverError::Refused(format!(
                "bad url: '{uri}'. no '/' found"
            )));
        };
        if uri.contains("://") {
            return Err(DriverError::Refused(format!(
                "call dtmdriver.Use() before you use custom scheme for '{uri}'"
            )));
        }
        Ok(ServerMethod {
            server: uri[..slash].to_owned(),
            method: uri[slash..].to_owned(),
        })
    }

    async fn register_service(
        &self,
        _target: &str,
        _endpoint: &str,
    ) -> Result<Registration, DriverError> {
        Ok(Registration {
            state: String::new(),
            keep_alive: None,
        })
    }

    async fn keep_alive(&self, state: &str) -> Result<Registration, DriverError> {
        Ok(Registration {
            state: state.to_owned(),
            keep_alive: None,
        })
    }

    async fn deregister(&self, _state: &str) -> Result<(), DriverError> {
        Ok(())
    }

    async fn resolve(&self, server: &str) -> Result<Resolution, DriverError> {
        Err(DriverError::Refused(format!(
            "the default driver resolves no scheme: '{server}'"
        )))
    }

    async fn rewrite_http(&self, _url: &str) -> Result<Option<HttpTarget>, DriverError> {
        Ok(None)
    }

    fn rewrite_grpc(
        &self,
        _server: &str,
        _method: &str,
        _payload: &[u8],
    ) -> Result<Option<GrpcCall>, DriverError> {
        Ok(None)
    }
}
