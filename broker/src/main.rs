//! The `runnel` binary: flags, config and logging, then [`runnel::run`].

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// See [`runnel::alloc`]: keeps hostile array lengths in requests from aborting the process.
#[global_allocator]
static ALLOCATOR: runnel::alloc::LazyHugeAlloc = runnel::alloc::LazyHugeAlloc;

fn main() -> ExitCode {
    let args = runnel::config::Args::parse();
    let config = match runnel::config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runnel: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match EnvFilter::try_new(&config.log.level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("runnel: invalid value for `log.level`: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(runnel::config::cli::Command::User(command)) = &args.command {
        return match runnel::auth::users::run(command, &config) {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("runnel: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.check_config {
        println!(
            "runnel: configuration OK ({} bridge(s), {} uplink(s))",
            config.bridge.len(),
            config.uplink.len()
        );
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("runnel")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runnel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(signals(shutdown.clone()));
    match runtime.block_on(runnel::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("runnel: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
