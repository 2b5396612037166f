//! The `portcullis` command line: `serve`, `check-config`, `scan`, `quarantine`, `generate`.

#![forbid(unsafe_code)]

mod generate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use portcullis::config::Config;
use portcullis::logging::{stderr_line, stdout_line, LogFormat};

/// jemalloc with its background threads (cargo feature `background_threads`): they purge what
/// closed sessions freed after its decay time, so RSS comes back after a peak of sessions;
/// glibc's malloc kept the peak resident (docs/performance.md, run 5).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Prints one line per message on stdout and a summary on stderr.
    /// Exit status: 0 all clean, 1 something found, 2 error (including an unusable
    /// configuration).
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
        /// Print the effective configuration as TOML instead (defaults filled in, relative
        /// paths resolved, secrets redacted); the checks still run and decide the exit status.
        #[arg(long)]
        print: bool,
        /// Also run the readiness checks once: connect to every backend as sessions do (TLS
        /// mode, certificate verification, greeting), write to the quarantine, ping clamd.
        #[arg(long, conflicts_with = "print")]
        probe: bool,
    },
    /// List, show, release, delete or purge quarantined messages.
    ///
    /// Exit status: 0 done, 1 no such quarantine id, 2 usage, configuration or I/O error.
    Quarantine(portcullis::scan::quarantine_cli::QuarantineArgs),
    /// Generate the manual page, shell completions or a test certificate.
    Generate(generate::GenerateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let guard = match portcullis::logging::init(cli.log_format) {
        Ok(guard) => Some(guard),
        Err(error) => {
            stderr_line(&format!("portcullis: logging: {error}"));
            None
        }
    };
    let serving = matches!(cli.command, Command::Serve { .. });
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig {
            config,
            print,
            probe,
        } => check_config(&config, print, probe),
        Command::Scan { config, paths } => scan(config.as_deref(), &paths),
        Command::Quarantine(args) => Ok(ExitCode::from(portcullis::scan::quarantine_cli::main(
            &args,
        ))),
        Command::Generate(args) => generate::run(args, Cli::command())
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
    };
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            let text = portcullis::error_text::render_chain(error.as_ref());
            if serving && guard.is_some() && tracing::enabled!(tracing::Level::ERROR) {
                // Through the log queue: a stuck stderr must not keep the process alive.
                tracing::error!("{text}");
            } else {
                stderr_line(&format!("portcullis: {text}"));
            }
            ExitCode::FAILURE
        }
    };
    drop(guard);
    code
}

fn check_config(path: &Path, print: bool, probe: bool) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            stderr_line(&format!("invalid configuration: {error}"));
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = portcullis::check::check(&config);
    if print {
        let text = portcullis::config_print::render(&config, &path.display().to_string())?;
        stdout_line(text.trim_end());
    } else {
        report.lines.iter().for_each(|line| stdout_line(line));
    }
    for warning in &report.warnings {
        stderr_line(&format!("WARNING: {warning}"));
    }
    for error in &report.errors {
        stderr_line(&format!("invalid configuration: {error}"));
    }
    if !report.ok() {
        return Ok(ExitCode::FAILURE);
    }
    if !print {
        stdout_line(&format!("configuration OK: {}", path.display()));
    }
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
        stdout_line(&portcullis::health::describe(check));
    }
    if checks.iter().all(|check| check.ok) {
        stdout_line("probe OK");
        Ok(ExitCode::SUCCESS)
    } else {
        stdout_line("probe FAILED");
        Ok(ExitCode::FAILURE)
    }
}

/// `portcullis scan`: exit 0 clean, 1 found, 2 for any error, a configuration error included.
fn scan(config: Option<&Path>, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let scan_config = match config.map(Config::load).transpose() {
        Ok(loaded) => loaded.map(|c| c.scan).unwrap_or_default(),
        Err(error) => {
            stderr_line(&format!("portcullis scan: invalid configuration: {error}"));
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            stderr_line(&format!("portcullis scan: starting the runtime: {error}"));
            return Ok(ExitCode::from(2));
        }
    };
    let summary = runtime.block_on(async {
        let mut out = std::io::stdout().lock();
        portcullis::scan::cli::run_scan(&scan_config, paths, &mut out, true).await
    });
    match summary {
        Ok(summary) => {
            stderr_line(&summary.to_string());
            Ok(ExitCode::from(
                u8::try_from(summary.exit_code()).unwrap_or(2),
            ))
        }
        Err(error) => {
            stderr_line(&format!("portcullis scan: {error}"));
            Ok(ExitCode::from(2))
        }
    }
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let limit = portcullis::capacity::raise_open_file_limit();
    portcullis::capacity::log_capacity(limit, config.limits.max_connections as u64);
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
        // Bound before anything is served: a busy metrics port is fatal like a listener's.
        let metrics_socket = match &config.metrics {
            Some(metrics) => Some(
                tokio::net::TcpListener::bind(metrics.bind)
                    .await
                    .map_err(|source| portcullis::metrics::MetricsError::Bind { addr: metrics.bind, source })
                    .context("metrics.bind")?,
            ),
            None => None,
        };
        for (listener, addr) in config.listeners.iter().zip(server.local_addrs()) {
            tracing::info!(listener = %listener.name, protocol = listener.protocol.as_str(), %addr, "listening");
        }
        let shutdown = server.shutdown_token();
        if let (Some(metrics), Some(socket)) = (&config.metrics, metrics_socket) {
            let bind = socket.local_addr().unwrap_or(metrics.bind);
            let readiness = std::sync::Arc::new(portcullis::health::Readiness::new(&config, server.scanner.clone()).log_changes());
            tokio::spawn(portcullis::health::refresh(readiness.clone(), portcullis::health::REFRESH_INTERVAL, shutdown.clone()));
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = portcullis::metrics::serve_listener(socket, readiness, async move { stop.cancelled().await }).await {
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
