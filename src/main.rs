//! The `mirrorgate` command line.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use std::sync::Arc;

use mirrorgate::proxy::reload::SetLogLevel;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter};

#[derive(Parser)]
#[command(
    name = "mirrorgate",
    version,
    about = "Kafka mirror topics with identical offsets, kept read-only behind a proxy"
)]
struct Cli {
    /// Log output format; the level comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete cluster links (flags of kafka-cluster-links).
    ClusterLinks(mirrorgate::admin::cli::ClusterLinks),
    /// Create, list, describe, pause, resume, promote and fail over mirror topics
    /// (flags of kafka-mirrors).
    Mirrors(mirrorgate::admin::cli::Mirrors),
    /// Move a link's mirror topics to the destination under a fleet-wide fence, without
    /// an error for the clients writing and reading them through mirrorgate.
    Cutover(mirrorgate::admin::cli_cutover::Cutover),
    /// Run the proxy in front of the destination cluster.
    Run {
        /// TOML config file (see config/mirrorgate.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

/// Logging to stderr; the returned function changes the filter at runtime.
fn init_logging(format: LogFormat) -> SetLogLevel {
    let initial = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(initial);
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::stderr().is_terminal();
    match format {
        LogFormat::Pretty => registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
    }
    Arc::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level '{level}': {e}"))?;
        handle
            .reload(filter)
            .map_err(|e| format!("log.level '{level}': {e}"))
    })
}

/// Admin commands print their own messages; errors go to stderr as Confluent's do.
fn client_exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.command {
        Command::Run { config } => config,
        Command::ClusterLinks(args) => {
            return client_exit(mirrorgate::admin::cli::cluster_links(args))
        }
        Command::Mirrors(args) => return client_exit(mirrorgate::admin::cli::mirrors(args)),
        Command::Cutover(args) => {
            return client_exit(mirrorgate::admin::cli_cutover::cutover(args))
        }
    };
    let set_log_level = init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(mirrorgate::app::run(&config, set_log_level));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
