//! Readiness checks behind `/readyz`: every backend accepts a TCP connection and, when clamd is
//! configured, at least one clamd answers PING.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::metrics::{ReadinessCheck, ReadinessProbe};
use crate::scan::Scanner;

/// How long one backend connect may take during a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The proxy's readiness probe.
pub struct Readiness {
    backends: Vec<(String, String)>,
    scanner: Arc<Scanner>,
    clamd_configured: bool,
}

impl Readiness {
    /// Checks for every backend of `config` and the scanner.
    pub fn new(config: &Config, scanner: Arc<Scanner>) -> Readiness {
        Readiness {
            backends: config
                .backends
                .iter()
                .map(|b| (b.name.clone(), b.address.clone()))
                .collect(),
            scanner,
            clamd_configured: !config.scan.clamd.is_empty(),
        }
    }

    async fn backend(name: &str, address: &str) -> ReadinessCheck {
        let outcome =
            tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(address)).await;
        let (ok, detail) = match outcome {
            Ok(Ok(_)) => (true, "reachable".to_string()),
            Ok(Err(error)) => (false, error.to_string()),
            Err(_) => (false, "connect timed out".to_string()),
        };
        ReadinessCheck {
            name: format!("backend {name}"),
            ok,
            detail,
        }
    }
}

impl ReadinessProbe for Readiness {
    fn check(&self) -> Pin<Box<dyn Future<Output = Vec<ReadinessCheck>> + Send + '_>> {
        Box::pin(async move {
            let mut checks = Vec::new();
            for (name, address) in &self.backends {
                checks.push(Readiness::backend(name, address).await);
            }
            if self.clamd_configured {
                let ping = self.scanner.ping().await;
                checks.push(ReadinessCheck {
                    name: "clamd".into(),
                    ok: ping.is_ok(),
                    detail: ping.err().map_or_else(|| "PONG".into(), |e| e.to_string()),
                });
            }
            checks
        })
    }
}
