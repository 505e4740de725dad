//! The `dtm-host` binary: command line, logging, then the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};

use dtm_host::config::{self, Config};
use dtm_host::drivers::{self, skeleton};
use dtm_host::server::{self, RunOptions};

// glibc's malloc took about a tenth of the coordinator's CPU time under load (profiled with
// perf in the saga bench); mimalloc's thread-local free lists cost less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A dtm-compatible distributed-transaction coordinator.
#[derive(Debug, Parser)]
#[command(name = "dtm-host", disable_version_flag = true)]
struct Cli {
    /// Config file (YAML with dtm's keys); environment variables apply beneath it.
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log at debug level, whatever LogLevel says.
    #[arg(short = 'd', long)]
    debug: bool,
    /// Wipe all stored transactions and topics before starting.
    #[arg(short = 'r', long)]
    reset: bool,
    /// Print the version and exit.
    #[arg(short = 'v', long)]
    version: bool,
    /// Testing only: expose POST /api/test/clock/advance?seconds=N to move the clock.
    #[arg(long, hide = true)]
    test_clock: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Work with microservice drivers (WebAssembly components of wit/driver.wit).
    Driver {
        #[command(subcommand)]
        action: DriverAction,
    },
}

#[derive(Debug, clap::Subcommand)]
enum DriverAction {
    /// Print a driver's name, schemes, contract version, exports and imports.
    Inspect { wasm: PathBuf },
    /// Run the parse conformance vectors for the driver's name; `default` checks the built-in
    /// driver. Exits non-zero when a case fails.
    Check {
        /// A `.wasm` driver, or `default`.
        driver: String,
        /// The vectors file (docs/drivers.md §8).
        #[arg(long, value_name = "FILE")]
        vectors: PathBuf,
        /// Where compiled drivers are kept (as `MicroService.DriverCacheDir`); none: compiled
        /// anew.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Longest one driver call may run (as `MicroService.DriverTimeoutMs`).
        #[arg(long, value_name = "MS", default_value_t = 100)]
        timeout_ms: u64,
    },
    /// Write a ready-to-build driver NAME into DIR/NAME: the contract, a source with the parse
    /// rule left to fill in, vectors, a config and a README of three commands.
    New {
        /// The driver's name (`name` export); without a `dtm-driver-` prefix, also its scheme.
        name: String,
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where the driver's directory is created.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

/// The languages `driver new` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.version {
        println!("dtm-host v{}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if let Some(Command::Driver { action }) = cli.command {
        return driver_command(action);
    }
    let loaded = config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    let config = loaded.config;
    if let Some(hours) = config::time_zone_hours(&config.time_zone_offset) {
        // POSIX TZ names the offset with the opposite sign: UTC-8 is eight hours east.
        std::env::set_var("TZ", format!("UTC{:+}", -hours));
    }
    init_logging(&config, cli.debug)?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key, "unknown config key ignored");
    }
    if config.log.rotation_enable != 0 {
        tracing::warn!(
            "Log.RotationEnable is not supported; rotate log files with logrotate (copytruncate)"
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let worker_threads = config.worker_threads(cores);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tracing::info!(worker_threads, cores, "async runtime started");
    let options = RunOptions {
        reset: cli.reset,
        test_clock: cli.test_clock,
    };
    runtime.block_on(server::run(config, options))?;
    Ok(())
}

fn driver_command(action: DriverAction) -> anyhow::Result<()> {
    match action {
        DriverAction::New { name, lang, dir } => {
            let language = match lang {
                Lang::Rust => skeleton::Language::Rust,
                Lang::Python => skeleton::Language::Python,
                Lang::Js => skeleton::Language::JavaScript,
            };
            let written = skeleton::write(&name, language, &dir)?;
            println!(
                "wrote {}; see its README.md to build, check and run it",
                written.display()
            );
            Ok(())
        }
        DriverAction::Inspect { wasm } => {
            let info = drivers::inspect(&wasm)?;
            println!("name:     {}", info.name);
            println!("schemes:  {}", info.schemes.join(", "));
            println!("contract: {}", drivers::CONTRACT);
            println!("exports:  {}", info.exports.join(", "));
            println!("imports:  {}", info.imports.join(", "));
            Ok(())
        }
        DriverAction::Check {
            driver,
            vectors,
            cache_dir,
            timeout_ms,
        } => {
            let vectors = std::fs::read_to_string(&vectors)
                .with_context(|| format!("cannot read {}", vectors.display()))?;
            // A driver's send-http needs a runtime even though parsing never uses it.
            let runtime = tokio::runtime::Runtime::new()?;
            let _guard = runtime.enter();
            let report = if driver == "default" {
                let driver = drivers::DefaultDriver::default();
                drivers::conformance::check(&driver, &vectors, |_| {})
            } else {
                let limits = drivers::WasmLimits {
                    call_timeout: std::time::Duration::from_millis(timeout_ms),
                    ..Default::default()
                };
                let driver = drivers::WasmDriver::load(
                    std::path::Path::new(&driver),
                    limits,
                    Default::default(),
                    Default::default(),
                    cache_dir.as_deref(),
                )?;
                drivers::conformance::check(&driver, &vectors, |env| driver.set_env(env))
            }?;
            for failure in &report.failures {
                println!("FAIL {failure}");
            }
            println!(
                "{}: {} passed, {} failed",
                report.driver,
                report.passed,
                report.failures.len()
            );
            if !report.failures.is_empty() {
                anyhow::bail!("{} vectors failed", report.failures.len());
            }
            Ok(())
        }
    }
}

fn init_logging(config: &Config, debug: bool) -> anyhow::Result<()> {
    let level = if debug {
        "debug"
    } else {
        config.log_level.as_str()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("warn,dtm_host={level}"))
        .context("invalid LogLevel")?;
    let mut writer: Option<BoxMakeWriter> = None;
    for output in config
        .log
        .outputs
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let next = match output {
            "stderr" => BoxMakeWriter::new(std::io::stderr),
            "stdout" => BoxMakeWriter::new(std::io::stdout),
            path => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| {
                        format!("config key Log.Outputs: cannot open log file {path}")
                    })?;
                BoxMakeWriter::new(std::sync::Mutex::new(file))
            }
        };
        writer = Some(match writer {
            None => next,
            Some(previous) => BoxMakeWriter::new(previous.and(next)),
        });
    }
    let writer = writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if std::env::var_os("DTM_DEBUG").is_some_and(|v| !v.is_empty()) {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
    Ok(())
}
