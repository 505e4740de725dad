//! The `dtm-host` binary: command line, logging, then the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};

use dtm_host::config::{self, Config};
use dtm_host::server::{self, RunOptions};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.version {
        println!("dtm-host v{}", env!("CARGO_PKG_VERSION"));
        return Ok(());
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
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let options = RunOptions {
        reset: cli.reset,
        test_clock: cli.test_clock,
    };
    runtime.block_on(server::run(config, options))?;
    Ok(())
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
