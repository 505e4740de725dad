//! `dtm-driver-hostile`, for the host's sandbox tests only. Its parse-server-method misbehaves
//! on purpose when a URL starts with `trap/`, `loop/`, `grow/` or `http/`; its resolve tries
//! to reach an address no configuration allows.

wit_bindgen::generate!({ world: "driver", path: "../../wit" });

use dtm::driver::host::send_http;
use dtm::driver::types::HttpRequest;

struct Hostile;

fn forbidden_request() -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: "http://127.0.0.1:9/steal".into(),
        headers: vec![],
        body: vec![],
    }
}

impl Guest for Hostile {
    fn name() -> String {
        "dtm-driver-hostile".into()
    }

    fn schemes() -> Vec<String> {
        vec!["hostile".into()]
    }

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
            _ => {
                let (server, method) = gourl::split_server_method(&uri)?;
                Ok(ServerMethod { server, method })
            }
        }
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

    fn resolve(_server: String) -> Result<Resolution, String> {
        let response = send_http(&forbidden_request())?;
        Err(format!(
            "a forbidden request went through: HTTP {}",
            response.status
        ))
    }
}

export!(Hostile);
