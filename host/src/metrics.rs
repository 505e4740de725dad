//! The coordinator's Prometheus metrics: dtm's families (docs/engine.md §7), with dtm's names and
//! labels, plus the microservice driver's. One [`Metrics`] is made at start and handed to
//! whoever records (the API edges, the engine, the gRPC caller, the driver); `GET /api/metrics`
//! renders it.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The content type of what [`Metrics::render`] returns (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What `dtm_server_info` reports in dtm's label names (dtm: its gin and gRPC-Go versions).
const HTTP_FRAMEWORK: &str = "axum 0.8";
const GRPC_FRAMEWORK: &str = "tonic 0.14";

/// Go client's default histogram buckets, in seconds, as dtm's histograms use them.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which API edge answered a request (label `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKind {
    Http,
    Grpc,
}

impl ApiKind {
    fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerInfoLabels {
    gin_version: &'static str,
    grpc_version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    r#type: &'static str,
    api: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiStatusLabels {
    r#type: &'static str,
    api: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// How a transaction the recovery loop claimed fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// Its pass finished the transaction.
    Finished,
    /// Its pass left the transaction unfinished (a branch error or ONGOING, a store error):
    /// looked at again on its schedule.
    Unfinished,
    /// Its pass panicked: retried after its lease.
    Aborted,
    /// Left for later: its business service is failing and has its share of the slots.
    Deferred,
}

impl RecoveryOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Unfinished => "unfinished",
            Self::Aborted => "aborted",
            Self::Deferred => "deferred",
        }
    }
}

/// How one call into a microservice driver ended, as the driver families count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverOutcome {
    /// It answered (counted in `dtm_driver_calls_total` only).
    Ok,
    /// It failed otherwise (the driver refused).
    Error,
    /// It trapped in the sandbox.
    Trap,
    /// It ran out of time and was stopped.
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelLabels {
    model: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelStatusLabels {
    model: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BranchLabels {
    model: &'static str,
    branchid: String,
    branchtype: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DriverLabels {
    driver: String,
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn default_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

fn ok_or_fail(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "fail"
    }
}

/// `metric`, after registering (a handle to) it in `registry`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Every metric family the coordinator exports, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    server_process: Family<ApiStatusLabels, Counter>,
    response_duration: Histograms<ApiLabels>,
    transaction_process: Family<ModelStatusLabels, Counter>,
    transaction_handled: Histograms<ModelLabels>,
    branch_process: Family<BranchLabels, Counter>,
    driver_calls: Family<DriverLabels, Counter>,
    driver_errors: Family<DriverLabels, Counter>,
    driver_traps: Family<DriverLabels, Counter>,
    driver_timeouts: Family<DriverLabels, Counter>,
    driver_resolve_refreshes: Family<DriverLabels, Counter>,
    recovery_due: Gauge,
    recovery_in_flight: Gauge,
    recovery_passes: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let server_info = Family::<ServerInfoLabels, Gauge>::default();
        server_info
            .get_or_create(&ServerInfoLabels {
                gin_version: HTTP_FRAMEWORK,
                grpc_version: GRPC_FRAMEWORK,
            })
            .set(1);
        registry.register(
            "dtm_server_info",
            "The information of this dtm server",
            server_info,
        );
        // Counters are registered without `_total`: the encoder appends it.
        let mut driver_family = |name: &str, help: &str| {
            registered(
                &mut registry,
                name,
                help,
                Family::<DriverLabels, Counter>::default(),
            )
        };
        let driver_calls = driver_family("dtm_driver_calls", "Calls into the microservice driver");
        let driver_errors = driver_family(
            "dtm_driver_errors",
            "Driver calls the driver answered with an error of its own",
        );
        let driver_traps = driver_family(
            "dtm_driver_traps",
            "Driver calls that trapped in the sandbox",
        );
        let driver_timeouts = driver_family(
            "dtm_driver_timeouts",
            "Driver calls stopped at MicroService.DriverTimeoutMs",
        );
        let driver_resolve_refreshes = driver_family(
            "dtm_driver_resolve_refreshes",
            "Refreshes of a resolved endpoint list (stale, or after an Unavailable call)",
        );
        let server_process = registered(
            &mut registry,
            "dtm_server_process",
            "All request received by dtm",
            Family::default(),
        );
        let response_duration: Histograms<ApiLabels> = registered(
            &mut registry,
            "dtm_server_response_duration",
            "The request durations of a dtm server api",
            Family::new_with_constructor(default_histogram),
        );
        let transaction_process = registered(
            &mut registry,
            "dtm_transaction_process",
            "All transactions processed by dtm",
            Family::default(),
        );
        let transaction_handled: Histograms<ModelLabels> = registered(
            &mut registry,
            "dtm_transaction_handled_duration",
            "Histogram of handling latency of the transaction that handled by the server",
            Family::new_with_constructor(default_histogram),
        );
        let branch_process = registered(
            &mut registry,
            "dtm_branch_process",
            "All branches processed by dtm",
            Family::default(),
        );
        let recovery_due = registered(
            &mut registry,
            "dtm_recovery_due",
            "Unfinished transactions due for a recovery pass and not claimed yet",
            Gauge::default(),
        );
        let recovery_in_flight = registered(
            &mut registry,
            "dtm_recovery_passes_in_flight",
            "Recovery passes this host runs now (at most TransCronConcurrency)",
            Gauge::default(),
        );
        let recovery_passes = registered(
            &mut registry,
            "dtm_recovery_passes",
            "Transactions the recovery loop claimed, by how their pass went",
            Family::default(),
        );
        Self {
            registry,
            recovery_due,
            recovery_in_flight,
            recovery_passes,
            server_process,
            response_duration,
            transaction_process,
            transaction_handled,
            branch_process,
            driver_calls,
            driver_errors,
            driver_traps,
            driver_timeouts,
            driver_resolve_refreshes,
        }
    }

    /// One API request answered (`dtm_server_process_total`, `dtm_server_response_duration`).
    pub fn api_request(&self, kind: ApiKind, api: &str, ok: bool, took: Duration) {
        let api = api.to_owned();
        self.server_process
            .get_or_create(&ApiStatusLabels {
                r#type: kind.label(),
                api: api.clone(),
                status: ok_or_fail(ok),
            })
            .inc();
        self.response_duration
            .get_or_create(&ApiLabels {
                r#type: kind.label(),
                api,
            })
            .observe(took.as_secs_f64());
    }

    /// One pass over a transaction of `model` ended, `age` after the transaction was created.
    pub fn pass_done(&self, model: &'static str, ok: bool, age: Duration) {
        self.transaction_process
            .get_or_create(&ModelStatusLabels {
                model,
                status: ok_or_fail(ok),
            })
            .inc();
        self.transaction_handled
            .get_or_create(&ModelLabels { model })
            .observe(age.as_secs_f64());
    }

    /// The recovery backlog, as last counted.
    pub fn recovery_due(&self, due: u64) {
        self.recovery_due
            .set(i64::try_from(due).unwrap_or(i64::MAX));
    }

    /// A recovery pass starts.
    pub fn recovery_pass_started(&self) {
        self.recovery_in_flight.inc();
    }

    /// A transaction the recovery loop claimed is done with: its pass (if it was started) ended.
    pub fn recovery_pass_ended(&self, outcome: RecoveryOutcome) {
        if outcome != RecoveryOutcome::Deferred {
            self.recovery_in_flight.dec();
        }
        self.recovery_passes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// One call of a branch record; `succeeded` iff the branch ended `succeed`.
    pub fn branch_called(&self, model: &'static str, branch_id: &str, op: &str, succeeded: bool) {
        self.branch_process
            .get_or_create(&BranchLabels {
                model,
                branchid: branch_id.to_owned(),
                branchtype: op.to_owned(),
                status: ok_or_fail(succeeded),
            })
            .inc();
    }

    /// One call into driver `driver`, and how it ended.
    pub fn driver_called(&self, driver: &str, operation: &'static str, outcome: DriverOutcome) {
        let labels = DriverLabels {
            driver: driver.to_owned(),
            operation,
        };
        self.driver_calls.get_or_create(&labels).inc();
        let failures = match outcome {
            DriverOutcome::Ok => return,
            DriverOutcome::Trap => &self.driver_traps,
            DriverOutcome::Timeout => &self.driver_timeouts,
            DriverOutcome::Error => &self.driver_errors,
        };
        failures.get_or_create(&labels).inc();
    }

    /// A resolved endpoint list of driver `driver` is being refreshed.
    pub fn resolve_refreshed(&self, driver: &str) {
        self.driver_resolve_refreshes
            .get_or_create(&DriverLabels {
                driver: driver.to_owned(),
                operation: "resolve",
            })
            .inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; the encoder's own errors come from the writer.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::warn!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_dtms_names_and_labels() {
        let metrics = Metrics::new();
        metrics.api_request(ApiKind::Http, "submit", true, Duration::from_millis(3));
        metrics.pass_done("saga", false, Duration::from_secs(1));
        metrics.branch_called("saga", "01", "action", true);
        metrics.driver_called("dtm-driver-x", "resolve", DriverOutcome::Error);
        metrics.resolve_refreshed("dtm-driver-x");
        let text = metrics.render();
        for line in [
            r#"dtm_server_info{gin_version="axum 0.8",grpc_version="tonic 0.14"} 1"#,
            r#"dtm_server_process_total{type="http",api="submit",status="ok"} 1"#,
            r#"dtm_server_response_duration_count{type="http",api="submit"} 1"#,
            r#"dtm_transaction_process_total{model="saga",status="fail"} 1"#,
            r#"dtm_transaction_handled_duration_bucket{model="saga",le="1"} 1"#,
            r#"dtm_branch_process_total{model="saga",branchid="01",branchtype="action",status="ok"} 1"#,
            r#"dtm_driver_calls_total{driver="dtm-driver-x",operation="resolve"} 1"#,
            r#"dtm_driver_errors_total{driver="dtm-driver-x",operation="resolve"} 1"#,
            r#"dtm_driver_resolve_refreshes_total{driver="dtm-driver-x",operation="resolve"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains("dtm_driver_traps_total{"),
            "no trap happened:\n{text}"
        );
    }
}
