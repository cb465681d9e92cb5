//! `runnel-bridge`: the MQTT bridge as its own process, producing over the Kafka protocol to
//! Runnel or any Kafka-compatible cluster. Flags and config only; the work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use runnel_bridge::config::BridgeFile;
use runnel_bridge::kafka::KafkaBackend;
use tokio_util::sync::CancellationToken;

/// MQTT → Kafka topics bridge (at-least-once), with optional topic → MQTT egress.
#[derive(Debug, Parser)]
#[command(name = "runnel-bridge", version)]
struct Args {
    /// TOML file with one or more `[[bridge]]` tables, and `[kafka]` for TLS and SASL.
    #[arg(long, short, env = "RUNNEL_BRIDGE_CONFIG")]
    config: PathBuf,
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    #[arg(long, env = "RUNNEL_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Kafka client id of the bridge's connections.
    #[arg(long, default_value = "runnel-bridge")]
    client_id: String,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long, env = "RUNNEL_BRIDGE_METRICS")]
    metrics_listen: Option<SocketAddr>,
    /// Log filter (`info`, `debug`, `runnel_bridge=debug`, …).
    #[arg(long, env = "RUNNEL_LOG", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let file = match runnel_bridge::config::load_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runnel-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runnel-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel-bridge: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args, file: BridgeFile) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let protocol = file.kafka.protocol();
    let backend = KafkaBackend::new(&args.bootstrap, &args.client_id, file.kafka)
        .with_context(|| format!("[kafka] of {}", args.config.display()))?;
    let running = runnel_bridge::start(file.bridge, backend, shutdown.clone()).await?;
    if let Some(addr) = args.metrics_listen {
        let (bound, serve) = runnel_bridge::metrics::serve(
            addr,
            runnel_bridge::metrics::bridges(running.stats()),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!("metrics on http://{bound}/metrics");
        tokio::spawn(serve);
    }
    tracing::info!(bootstrap = %args.bootstrap, security_protocol = protocol, "runnel-bridge running");
    runnel_bridge::service::ready("bridging");
    tokio::spawn(runnel_bridge::service::watchdog(shutdown.clone()));
    running.wait().await;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: finishing the write in progress");
    runnel_bridge::service::stopping();
    shutdown.cancel();
}
