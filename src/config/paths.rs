//! Relative paths in a configuration file are relative to the file's directory, never to the
//! working directory the process happened to start in (`systemd` starts services in `/`).
//!
//! [`Config::resolve_paths`] rewrites every path-valued key — `tls.cert`, `tls.key`,
//! `tls.sni[].cert`/`key`, `backend[].ca`, `cluster.ca`/`client_cert`/`client_key`, `scan.rules_dir`, `scan.quarantine_dir`,
//! `scan.notice` — once, right after parsing, so every later message names the path that was
//! really tried.

use std::path::{Path, PathBuf};

use super::Config;

/// `path` if absolute, else `base.join(path)`.
fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() && !path.as_os_str().is_empty() {
        *path = base.join(&*path);
    }
}

/// The directory relative paths of the file `config_file` resolve against, made absolute
/// (against the current directory) when the file was named by a relative path.
pub fn base_dir(config_file: &Path) -> PathBuf {
    let parent = match config_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&parent).unwrap_or(parent)
}

impl Config {
    /// Makes every relative path in the configuration relative to `base` (the configuration
    /// file's directory, see [`base_dir`]).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            resolve(base, &mut tls.cert);
            resolve(base, &mut tls.key);
            for sni in &mut tls.sni {
                resolve(base, &mut sni.cert);
                resolve(base, &mut sni.key);
            }
        }
        for backend in &mut self.backends {
            if let Some(ca) = &mut backend.ca {
                resolve(base, ca);
            }
        }
        if let Some(cluster) = &mut self.cluster {
            for path in [
                &mut cluster.ca,
                &mut cluster.client_cert,
                &mut cluster.client_key,
            ]
            .into_iter()
            .flatten()
            {
                resolve(base, path);
            }
        }
        for router in &mut self.routers {
            if let Some(map) = &mut router.map_file {
                resolve(base, map);
            }
        }
        let scan = &mut self.scan;
        if let Some(dir) = &mut scan.rules_dir {
            resolve(base, dir);
        }
        resolve(base, &mut scan.quarantine_dir);
        if let Some(notice) = &mut scan.notice {
            resolve(base, notice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_file_and_absolute_ones_stay() {
        let mut config = Config::parse(
            "[tls]\ncert = \"certs/cert.pem\"\nkey = \"/etc/key.pem\"\n[[tls.sni]]\nnames = [\"a.example\"]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
             [scan]\nrules_dir = \"rules\"\nquarantine_dir = \"q\"\nnotice = \"../notice.txt\"\n\
             [[listener]]\nname = \"l\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\n\
             [[backend]]\nname = \"b\"\naddress = \"127.0.0.1:143\"\ntls = \"none\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        config.resolve_paths(Path::new("/etc/portcullis"));
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.cert, Path::new("/etc/portcullis/certs/cert.pem"));
        assert_eq!(tls.key, Path::new("/etc/key.pem"));
        assert_eq!(tls.sni[0].key, Path::new("/etc/portcullis/a.key"));
        assert_eq!(
            config.backends[0].ca.as_deref(),
            Some(Path::new("/etc/portcullis/ca.pem"))
        );
        assert_eq!(
            config.scan.rules_dir.as_deref(),
            Some(Path::new("/etc/portcullis/rules"))
        );
        assert_eq!(config.scan.quarantine_dir, Path::new("/etc/portcullis/q"));
        assert_eq!(
            config.scan.notice.as_deref(),
            Some(Path::new("/etc/portcullis/../notice.txt"))
        );
    }

    #[test]
    fn a_bare_file_name_resolves_against_the_working_directory_made_absolute() {
        let base = base_dir(Path::new("portcullis.toml"));
        assert!(base.is_absolute(), "{}", base.display());
        assert_eq!(base_dir(Path::new("/etc/p/x.toml")), Path::new("/etc/p"));
    }
}
