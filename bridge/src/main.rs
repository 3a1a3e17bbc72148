//! `greentic-bridge --config bridge/bridge.local.toml`: the process around [`greentic_bridge::start`].
//!
//! Why so thin: everything testable lives in the library; this file only reads
//! the CLI, sets up JSON logging (one line per event, on stdout, for the log
//! collector), and turns SIGTERM / ctrl-c into a graceful shutdown, which is how
//! Kubernetes and the local-run script stop the bridge.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use greentic_bridge::Config;

/// Native NATS <-> HTTP bridge for Greentic's Spin components.
#[derive(Debug, Parser)]
#[command(name = "greentic-bridge", version)]
struct Args {
    /// The TOML configuration file (see bridge/README.md).
    #[arg(long, env = "GREENTIC_BRIDGE_CONFIG")]
    config: PathBuf,
    /// Check the configuration (and token sources) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();

    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("greentic-bridge: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("greentic-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match greentic_bridge::start(config).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("greentic-bridge: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// JSON lines; level from `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
