//! The `portcullis` command line: `serve`, `check-config`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portcullis::config::Config;

/// portcullis: a TLS-terminating, mail-scanning proxy for legacy IMAP and POP3 servers.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Scan .eml files, mbox files or Maildir folders with the configured pipeline.
    ///
    /// Exit status: 0 all clean, 1 something found, 2 error.
    Scan {
        /// Configuration file (its `[scan]` section is used); default: built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Files or Maildir folders to scan.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Validate a configuration file and print a summary.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Also run the readiness checks once: connect to every backend as sessions do (TLS
        /// mode, certificate verification, greeting), write to the quarantine, ping clamd.
        #[arg(long)]
        probe: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { config, probe } => check_config(&config, probe),
        Command::Scan { config, paths } => scan(config.as_deref(), &paths),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check_config(path: &Path, probe: bool) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("invalid configuration: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = portcullis::check::check(&config);
    for line in &report.lines {
        println!("{line}");
    }
    for warning in &report.warnings {
        println!("WARNING: {warning}");
    }
    for error in &report.errors {
        eprintln!("invalid configuration: {error}");
    }
    if !report.ok() {
        return Ok(ExitCode::FAILURE);
    }
    println!("configuration OK: {}", path.display());
    if probe {
        return probe_config(&config);
    }
    Ok(ExitCode::SUCCESS)
}

/// `check-config --probe`: the `/readyz` checks once; fails if any fails.
fn probe_config(config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let checks = runtime.block_on(portcullis::health::probe_once(config))?;
    for check in &checks {
        println!("{}", portcullis::health::describe(check));
    }
    if checks.iter().all(|check| check.ok) {
        println!("probe OK");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("probe FAILED");
        Ok(ExitCode::FAILURE)
    }
}

fn scan(config: Option<&std::path::Path>, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let scan_config = match config {
        Some(path) => Config::load(path)?.scan,
        None => portcullis::scan::ScanConfig::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(async {
        let mut out = std::io::stdout().lock();
        portcullis::scan::cli::run_scan_command(&scan_config, paths, &mut out).await
    });
    match code {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(2))),
        Err(error) => {
            eprintln!("portcullis scan: {error}");
            Ok(ExitCode::from(2))
        }
    }
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).with_context(|| format!("loading {}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        // Installed before the listeners exist: a SIGHUP must never hit the default action
        // (terminate) once clients can connect.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let server = portcullis::server::Server::bind(&config).await?;
        for (listener, addr) in config.listeners.iter().zip(server.local_addrs()) {
            tracing::info!(listener = %listener.name, protocol = listener.protocol.as_str(), %addr, "listening");
        }
        let shutdown = server.shutdown_token();
        if let Some(metrics) = &config.metrics {
            let readiness = std::sync::Arc::new(portcullis::health::Readiness::new(&config, server.scanner.clone()).log_changes());
            tokio::spawn(portcullis::health::refresh(readiness.clone(), portcullis::health::REFRESH_INTERVAL, shutdown.clone()));
            let stop = shutdown.clone();
            let bind = metrics.bind;
            tokio::spawn(async move {
                if let Err(error) = portcullis::metrics::serve_http(bind, readiness, async move { stop.cancelled().await }).await {
                    tracing::error!(%error, "metrics endpoint failed");
                }
            });
            tracing::info!(%bind, "metrics on /metrics, health on /healthz and /readyz");
        }
        tokio::spawn(reload_on_hangup(
            hangup,
            server.reload_handles(),
            config.clone(),
            path.to_path_buf(),
            shutdown.clone(),
        ));
        tokio::spawn(async move {
            wait_for_termination().await;
            tracing::info!("termination signal received");
            shutdown.cancel();
        });
        server.run().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Re-reads `path` on every SIGHUP (systemd: `ExecReload=/bin/kill -HUP $MAINPID`). Settings
/// that cannot change live are always compared with the configuration the process started with.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    handles: portcullis::reload::ReloadHandles,
    running: Config,
    path: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = hangup.recv() => if received.is_none() { return },
        }
        tracing::info!(config = %path.display(), "SIGHUP: reloading configuration");
        let (handles, running, path) = (handles.clone(), running.clone(), path.clone());
        // Certificate and rule loading is blocking file I/O and CPU work.
        let result = tokio::task::spawn_blocking(move || {
            portcullis::reload::reload_file(&handles, &running, &path)
        })
        .await;
        if let Err(error) = result {
            tracing::error!(%error, "configuration reload task failed");
        }
    }
}
async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot install SIGTERM handler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
