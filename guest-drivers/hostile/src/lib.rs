//! `dtm-driver-hostile`, for the host's sandbox tests only. Its parse-server-method misbehaves
//! on purpose when a URL starts with `trap/`, `loop/`, `grow/` or `http/`. Its resolve floods
//! the log when the server names `flood`, answers 20,000 endpoints when it names `many`, asks
//! the registry (the target's host) for `/redirect` when it names `redirect`, sends it a `Host`
//! header when it names `host-header`, sends it requests forever when it names `spin`, and
//! otherwise tries to reach an address no configuration allows. Its registration talks to a
//! fake registry at the target's host (`POST /register`, `/keepalive` every 200 ms,
//! `/deregister`), so the tests can watch the host drive the registration's life; when the
//! target's path names `stall`, it sends `/register` again and again, forever.

use sdk::host::{log, send_http};
use sdk::{HttpRequest, LogLevel, Registrar, Registration, Resolution, ServerMethod};

struct Hostile;

fn forbidden_request() -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: "http://127.0.0.1:9/steal".into(),
        headers: vec![],
        body: vec![],
    }
}

/// One call to the fake registry at `registry` (`host:port`).
fn post(registry: &str, what: &str, body: String) -> Result<(), String> {
    let request = HttpRequest {
        method: "POST".into(),
        url: format!("http://{registry}/{what}"),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: body.into_bytes(),
    };
    match send_http(&request)?.status {
        200 => Ok(()),
        status => Err(format!("registry answered {status}")),
    }
}

impl sdk::Driver for Hostile {
    const NAME: &'static str = "dtm-driver-hostile";
    const SCHEMES: &'static [&'static str] = &["hostile"];
    type Registrar = Self;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        match uri.split('/').next() {
            Some("trap") => panic!("hostile driver traps on purpose"),
            Some("loop") => {
                let mut spins = 0u64;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            Some("grow") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            Some("http") => send_http(&forbidden_request()).map(|_| ServerMethod {
                server: String::new(),
                method: String::new(),
            }),
            _ => gourl::split_server_method(&uri).map(ServerMethod::from),
        }
    }

    fn resolve(server: String, registry: String) -> Result<Resolution, String> {
        let at_registry = |path: &str, headers: Vec<(String, String)>| -> Result<u16, String> {
            let host = gourl::parse(&registry)?.host.into_owned();
            let request = HttpRequest {
                method: "GET".into(),
                url: format!("http://{host}/{path}"),
                headers,
                body: vec![],
            };
            Ok(send_http(&request)?.status)
        };
        if server.contains("redirect") {
            let status = at_registry("redirect", vec![])?;
            return Err(format!("the registry answered {status}"));
        }
        if server.contains("host-header") {
            let status = at_registry("x", vec![("Host".into(), "internal.example".into())])?;
            return Err(format!("a Host header went through: HTTP {status}"));
        }
        if server.contains("spin") {
            loop {
                let _ = std::hint::black_box(at_registry("spin", vec![]));
            }
        }
        if server.contains("flood") {
            let message = "flood ".repeat((64 << 10) / 6);
            loop {
                log(LogLevel::Info, &message);
            }
        }
        if server.contains("many") {
            return Ok(Resolution {
                endpoints: (0..20_000)
                    .map(|i| format!("10.0.{}.{}:80", i / 256, i % 256))
                    .collect(),
                refresh_ms: 1,
            });
        }
        let response = send_http(&forbidden_request())?;
        Err(format!(
            "a forbidden request went through: HTTP {}",
            response.status
        ))
    }
}

impl Registrar for Hostile {
    fn register_service(target: String, endpoint: String) -> Result<Registration, String> {
        let registry = gourl::parse(&target)?.host.into_owned();
        if target.contains("stall") {
            loop {
                let _ = std::hint::black_box(post(&registry, "register", endpoint.clone()));
            }
        }
        post(&registry, "register", endpoint)?;
        Ok(Registration {
            state: registry,
            keep_alive_ms: 200,
        })
    }

    fn keep_alive(registry: String) -> Result<Registration, String> {
        post(&registry, "keepalive", String::new())?;
        Ok(Registration {
            state: registry,
            keep_alive_ms: 200,
        })
    }

    fn deregister(registry: String) -> Result<(), String> {
        post(&registry, "deregister", String::new())
    }
}

sdk::export_driver!(Hostile);
