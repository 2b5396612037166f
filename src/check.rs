//! `portcullis check-config`: everything that can be verified without binding sockets —
//! the file itself, every certificate and key (default and `[[tls.sni]]`, with expiry
//! warnings), the rule files, backend TLS material and the trusted-proxy CIDRs.

use std::path::Path;

use crate::certinfo::{inspect, CertInfo};
use crate::config::{Config, Protocol};
use crate::tls::{load_keyed, TlsError};

/// The outcome of a check: informational lines, warnings and errors (any error fails it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// What was checked and found fine.
    pub lines: Vec<String>,
    /// Problems that do not stop the proxy (e.g. a certificate expiring within 30 days).
    pub warnings: Vec<String>,
    /// Problems that would stop the proxy from starting or reloading.
    pub errors: Vec<String>,
}

impl CheckReport {
    /// Whether the configuration is usable.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks a parsed (and therefore already validated) configuration's external material.
pub fn check(config: &Config) -> CheckReport {
    let mut report = CheckReport::default();
    check_tls(config, &mut report);
    check_rules(config.scan.rules_dir.as_deref(), &mut report);
    check_notice(config, &mut report);
    check_backends(config, &mut report);
    check_routers(config, &mut report);
    for l in &config.listeners {
        let upstream = match (&l.backend, &l.router) {
            (Some(backend), _) => format!("backend {backend}"),
            (None, Some(router)) => format!("router {router}"),
            (None, None) => "nothing".into(),
        };
        report.lines.push(format!(
            "listener {}: {} on {} tls={:?} require_tls={} -> {upstream}",
            l.name,
            l.protocol.as_str(),
            l.bind,
            l.tls,
            l.requires_tls(),
        ));
        if l.proxy_protocol {
            let nets: Vec<String> = l.trusted_proxies.iter().map(ToString::to_string).collect();
            report.lines.push(format!(
                "listener {}: PROXY protocol required from {}",
                l.name,
                nets.join(", ")
            ));
        }
    }
    report
}

/// Static routers: rules and map file load, every backend they name exists; http routers: what
/// they will ask.
fn check_routers(config: &Config, report: &mut CheckReport) {
    for router in &config.routers {
        match router.kind {
            crate::config::RouterKind::Static => match crate::routing::load_table(config, router) {
                Ok(table) => report.lines.push(format!(
                    "router {}: static, {} rules, {} map entries, default {}",
                    router.name,
                    router.rules.len(),
                    table.map_entries(),
                    router
                        .default
                        .as_deref()
                        .unwrap_or("none (unmatched logins refused)")
                )),
                Err(error) => report.errors.push(error.to_string()),
            },
            crate::config::RouterKind::Http => report.lines.push(format!(
                "router {}: auth_http {} timeout {:?} cache_ttl {:?}, backends {}",
                router.name,
                router.url.as_deref().unwrap_or("-"),
                router.timeout,
                router.cache_ttl,
                config.router_backends(router).join(", ")
            )),
        }
    }
}

fn check_tls(config: &Config, report: &mut CheckReport) {
    let Some(tls) = &config.tls else {
        report
            .warnings
            .push("tls: none configured: a self-signed certificate will be generated".into());
        return;
    };
    let allow = tls.allow_expired;
    check_cert("tls", "tls default", (&tls.cert, &tls.key), allow, report);
    for (i, sni) in tls.sni.iter().enumerate() {
        let label = format!("tls.sni[{i}] ({})", sni.names.join(", "));
        let prefix = format!("tls.sni[{i}]");
        if let Some(info) = check_cert(&prefix, &label, (&sni.cert, &sni.key), allow, report) {
            for name in &sni.names {
                if !covers(&info, name) {
                    report.warnings.push(format!(
                        "{label}: certificate {} does not cover {name:?}",
                        sni.cert.display()
                    ));
                }
            }
        }
    }
    if tls.strict_sni {
        report
            .lines
            .push("tls: strict_sni: unknown server names are refused".into());
    }
}

fn covers(info: &CertInfo, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
    info.dns_names
        .iter()
        .any(|n| *n == name || Some(n) == wildcard.as_ref())
}

/// Checks the certificate and key of configuration keys `{prefix}.cert` / `{prefix}.key`:
/// an expired certificate is an error unless `allow_expired` (then a warning), one expiring
/// within [`crate::certinfo::EXPIRY_WARNING_DAYS`] a warning.
fn check_cert(
    prefix: &str,
    label: &str,
    (cert, key): (&Path, &Path),
    allow_expired: bool,
    report: &mut CheckReport,
) -> Option<CertInfo> {
    let certified = match load_keyed(prefix, cert, key) {
        Ok(certified) => certified,
        Err(error) => {
            report.errors.push(format!("{label}: {error}"));
            return None;
        }
    };
    let leaf = certified.cert.first()?;
    match inspect(leaf) {
        Ok(info) => {
            report.lines.push(format!(
                "{label}: {} names [{}] valid until {} ({} days)",
                cert.display(),
                info.dns_names.join(", "),
                info.not_after,
                info.days_left
            ));
            if info.expired() && !allow_expired {
                let error = TlsError::Expired {
                    key: format!("{prefix}.cert"),
                    path: cert.display().to_string(),
                    not_after: info.not_after.clone(),
                };
                report.errors.push(format!("{label}: {error}"));
            } else if let Some(warning) = info.expiry_warning() {
                report.warnings.push(format!(
                    "{label}: {prefix}.cert: {}: {warning}",
                    cert.display()
                ));
            }
            Some(info)
        }
        Err(reason) => {
            let error = TlsError::Pem {
                path: cert.display().to_string(),
                reason: format!("unparsable certificate: {reason}"),
            };
            report.errors.push(format!("{label}: {error}"));
            None
        }
    }
}

fn check_rules(dir: Option<&Path>, report: &mut CheckReport) {
    let from = dir.map_or_else(
        || crate::scan::rules::BUILTIN_RULES_NAME.to_string(),
        |d| d.display().to_string(),
    );
    match crate::scan::rules::RuleSet::load(dir) {
        Ok(rules) => report.lines.push(format!(
            "scan rules: {} rule(s) compiled from {from}",
            rules.len(),
        )),
        Err(error) => report
            .errors
            .push(format!("scan rules: scan.rules_dir: {error}")),
    }
}

/// `scan.notice` must be a readable file (the scanner refuses to start otherwise).
fn check_notice(config: &Config, report: &mut CheckReport) {
    let Some(notice) = &config.scan.notice else {
        return;
    };
    match std::fs::File::open(notice).and_then(|file| file.metadata()) {
        Ok(meta) if meta.is_file() => report
            .lines
            .push(format!("scan notice: {}", notice.display())),
        Ok(_) => report.errors.push(format!(
            "scan.notice: {}: not a regular file",
            notice.display()
        )),
        Err(error) => report
            .errors
            .push(format!("scan.notice: {}: {error}", notice.display())),
    }
}

fn check_backends(config: &Config, report: &mut CheckReport) {
    for b in &config.backends {
        for protocol in [Protocol::Imap, Protocol::Pop3] {
            if let Err(error) = crate::backend::BackendTarget::new(b, protocol) {
                report.errors.push(format!("backend {}: {error}", b.name));
                break;
            }
        }
        report.lines.push(format!(
            "backend {}: {} tls={:?} verify={} server_name={} forward_client_ip={}",
            b.name,
            b.address,
            b.tls,
            b.verify,
            b.tls_server_name(),
            b.forward_client_ip.as_str()
        ));
    }
}
