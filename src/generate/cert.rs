//! `portcullis generate cert`: a private CA and a server certificate signed by it, for trying
//! portcullis out (see certs/README.md).
//!
//! Both keys are ECDSA P-256 (rcgen with aws-lc-rs, the crypto backend rustls uses here). The CA
//! is name-constrained to the server's names, so a CA that ends up in some trust store cannot
//! vouch for any other host. Files are created, never silently replaced: an existing file is an
//! error unless `--force` is given. Keys are created with mode 0600 from the start.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use time::{Duration, OffsetDateTime};

/// Validity of the CA certificate.
const CA_DAYS: i64 = 3650;

/// Arguments of `portcullis generate cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// DNS name or IP address the server certificate is for (repeat for more names; the first
    /// is also the subject's common name).
    #[arg(long = "name", value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Directory to write ca.pem, ca.key, server.pem and server.key into (created if missing).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub out: PathBuf,
    /// Validity of the server certificate in days (the CA is valid for ten years).
    #[arg(long, value_name = "DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Replace existing files.
    #[arg(long, conflicts_with = "keep_existing")]
    pub force: bool,
    /// If all four files exist already, keep them and succeed (for init containers that run
    /// on every start); some but not all of them existing is still an error.
    #[arg(long)]
    pub keep_existing: bool,
}

/// Errors of `generate cert`.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A name is neither an IP address nor a DNS name.
    #[error("--name {name:?} is not a DNS name or IP address")]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// An output file exists and `--force` was not given.
    #[error("{0} exists; use --force to replace it")]
    Exists(PathBuf),
    /// rcgen refused the parameters or failed to sign.
    #[error("generating the certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Creating the directory or writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The files `generate` writes, in order, with their modes.
const FILES: [(&str, u32); 4] = [
    ("ca.pem", 0o644),
    ("ca.key", 0o600),
    ("server.pem", 0o644),
    ("server.key", 0o600),
];

/// What `generate` wrote.
#[derive(Debug)]
pub struct Written {
    /// The directory the files are in.
    pub dir: PathBuf,
    /// The names the server certificate is valid for.
    pub names: Vec<String>,
    /// Validity of the server certificate in days.
    pub days: u32,
    /// `--keep-existing` found all files and wrote nothing.
    pub kept: bool,
}

impl Written {
    /// A report for the terminal: the files and how to use them.
    pub fn summary(&self) -> String {
        let dir = self.dir.display();
        if self.kept {
            return format!("{dir}: ca.pem, ca.key, server.pem, server.key exist; kept them\n");
        }
        format!(
            "wrote {dir}/ca.pem (private CA, valid {CA_DAYS} days, only for {names})\n\
             wrote {dir}/ca.key (mode 0600; delete it if you never sign another certificate)\n\
             wrote {dir}/server.pem (server certificate for {names}, valid {days} days)\n\
             wrote {dir}/server.key (mode 0600)\n\
             \n\
             In the configuration:\n\
             \n\
             [tls]\n\
             cert = \"{dir}/server.pem\"\n\
             key = \"{dir}/server.key\"\n\
             \n\
             Clients trust it with {dir}/ca.pem, e.g. curl --cacert {dir}/ca.pem imaps://{first}:993/\n",
            names = self.names.join(", "),
            days = self.days,
            first = self.names.first().map(String::as_str).unwrap_or("localhost"),
        )
    }
}

/// Generates the CA and the server certificate and writes the four files.
pub fn generate(args: &CertArgs) -> Result<Written, CertError> {
    let existing: Vec<PathBuf> = FILES
        .iter()
        .map(|(name, _)| args.out.join(name))
        .filter(|path| path.symlink_metadata().is_ok())
        .collect();
    let written = |kept| Written {
        dir: args.out.clone(),
        names: args.names.clone(),
        days: args.days,
        kept,
    };
    if args.keep_existing && existing.len() == FILES.len() {
        return Ok(written(true));
    }
    if let Some(path) = existing.into_iter().find(|_| !args.force) {
        return Err(CertError::Exists(path));
    }
    let subtrees = args
        .names
        .iter()
        .map(|name| permitted_subtree(name))
        .collect::<Result<Vec<_>, _>>()?;
    let first = args.names.first().ok_or_else(|| CertError::BadName {
        name: String::new(),
    })?;
    let now = OffsetDateTime::now_utc();
    // A little slack for clients whose clock is behind.
    let not_before = now - Duration::hours(1);

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("portcullis test CA for {first}"),
    );
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "portcullis generate cert");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.name_constraints = Some(NameConstraints {
        permitted_subtrees: subtrees,
        excluded_subtrees: Vec::new(),
    });
    ca_params.not_before = not_before;
    ca_params.not_after = now + Duration::days(CA_DAYS);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params =
        CertificateParams::new(args.names.clone()).map_err(|_| CertError::BadName {
            name: args.names.join(" "),
        })?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, first.clone());
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.not_before = not_before;
    leaf_params.not_after = now + Duration::days(i64::from(args.days));
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    let pems = [
        ca_cert.pem(),
        ca_key_pem,
        leaf_cert.pem(),
        leaf_key.serialize_pem(),
    ];
    std::fs::create_dir_all(&args.out).map_err(|source| CertError::Io {
        path: args.out.clone(),
        source,
    })?;
    for ((name, mode), pem) in FILES.iter().zip(&pems) {
        write_file(&args.out.join(name), pem.as_bytes(), *mode)?;
    }
    Ok(written(false))
}

/// The CA's name constraint for one server name: the DNS name (or a wildcard's domain) and its
/// subdomains, or exactly that one IP address.
fn permitted_subtree(name: &str) -> Result<GeneralSubtree, CertError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
            ip, prefix,
        )));
    }
    // A wildcard (`*.example.org`) is constrained to the domain it covers.
    let domain = name.strip_prefix("*.").unwrap_or(name);
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(CertError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(GeneralSubtree::DnsName(domain.to_ascii_lowercase()))
}

/// Writes `bytes` to a new file created with `mode` (an existing one, only reached with
/// `--force`, is removed first so that a key never passes through a wider mode).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let io_error = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error(error)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    // The umask may have taken bits away; never add any beyond `mode`.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, names: &[&str]) -> CertArgs {
        CertArgs {
            names: names.iter().map(|n| n.to_string()).collect(),
            out: dir.to_path_buf(),
            days: 30,
            force: false,
            keep_existing: false,
        }
    }

    #[test]
    fn writes_four_files_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        generate(&args(&out, &["mail.example.org", "127.0.0.1"])).unwrap();
        for (name, mode) in [
            ("ca.pem", 0o644),
            ("ca.key", 0o600),
            ("server.pem", 0o644),
            ("server.key", 0o600),
        ] {
            let meta = std::fs::metadata(out.join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
        }
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path(), &["mail.example.org"]);
        generate(&a).unwrap();
        let before = std::fs::read(dir.path().join("server.key")).unwrap();
        let error = generate(&a).unwrap_err();
        assert!(matches!(error, CertError::Exists(_)), "{error}");
        assert_eq!(
            std::fs::read(dir.path().join("server.key")).unwrap(),
            before
        );
        a.force = true;
        generate(&a).unwrap();
        assert_ne!(
            std::fs::read(dir.path().join("server.key")).unwrap(),
            before
        );
    }

    #[test]
    fn keep_existing_keeps_a_complete_set_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path(), &["mail.example.org"]);
        a.keep_existing = true;
        assert!(!generate(&a).unwrap().kept);
        let before = std::fs::read(dir.path().join("server.key")).unwrap();
        assert!(generate(&a).unwrap().kept);
        assert_eq!(
            std::fs::read(dir.path().join("server.key")).unwrap(),
            before
        );
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        let error = generate(&a).unwrap_err();
        assert!(matches!(error, CertError::Exists(_)), "{error}");
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = generate(&args(dir.path(), &[])).unwrap_err();
        assert!(matches!(error, CertError::BadName { .. }), "{error}");
        for bad in [
            "",
            "mail..example.org",
            "-mail.example.org",
            "mail example",
            "*.",
        ] {
            let error = generate(&args(dir.path(), &[bad])).unwrap_err();
            assert!(
                matches!(error, CertError::BadName { .. }),
                "{bad:?}: {error}"
            );
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
