//! `dtm-host driver check`: runs the conformance vectors (`parse-vectors.json`, docs/drivers.md
//! §8) that name a driver against it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Driver;

#[derive(Debug, Deserialize)]
struct Vector {
    driver: String,
    uri: String,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    error: bool,
    /// Environment variables the driver must see for this case (empty: none set).
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
}

/// The outcome of a conformance run.
#[derive(Debug, Default)]
pub struct Report {
    /// The driver's name, which chose the vectors.
    pub driver: String,
    pub passed: usize,
    /// One line per failed case.
    pub failures: Vec<String>,
}

/// Why a conformance run could not start (failed cases are in the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("not a vectors file: {0}")]
    NotVectors(serde_json::Error),
}

/// Runs every vector for `driver.name()` from the JSON array `vectors`; `set_env` gives the
/// driver the environment variables a case names (and none otherwise).
pub fn check(
    driver: &dyn Driver,
    vectors: &str,
    set_env: impl Fn(BTreeMap<String, String>),
) -> Result<Report, ConformanceError> {
    let vectors: Vec<Vector> =
        serde_json::from_str(vectors).map_err(ConformanceError::NotVectors)?;
    let mut report = Report {
        driver: driver.name().to_owned(),
        ..Report::default()
    };
    for v in vectors.iter().filter(|v| v.driver == driver.name()) {
        set_env(v.env.clone().unwrap_or_default());
        let got = driver.parse_server_method(&v.uri);
        let ok = match (&got, v.error) {
            (Err(_), true) => true,
            (Ok(sm), false) => {
                Some(&sm.server) == v.server.as_ref() && Some(&sm.method) == v.method.as_ref()
            }
            _ => false,
        };
        if ok {
            report.passed += 1;
        } else {
            let expected = if v.error {
                "an error".to_owned()
            } else {
                format!(
                    "({:?}, {:?})",
                    v.server.as_deref().unwrap_or(""),
                    v.method.as_deref().unwrap_or("")
                )
            };
            let got = match got {
                Ok(sm) => format!("({:?}, {:?})", sm.server, sm.method),
                Err(e) => format!("error: {e}"),
            };
            report
                .failures
                .push(format!("{:?}: expected {expected}, got {got}", v.uri));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::DefaultDriver;

    #[test]
    fn the_default_driver_passes_its_vectors() {
        let vectors = include_str!("../../../tests/data/parse-vectors.json");
        let report = check(&DefaultDriver::default(), vectors, |_| {}).unwrap();
        assert!(report.failures.is_empty(), "{:#?}", report.failures);
        assert_eq!(report.passed, 8);
    }
}
