//! Certificate material named by configuration keys: every error says which key
//! (`tls.cert`, `tls.sni[1].key`, ...) and which file, and expired certificates are refused
//! unless `[tls] allow_expired`.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::{load_cert_chain, load_private_key, provider, TlsError};

/// Loads the certificate and key named by the configuration keys `{prefix}.cert` and
/// `{prefix}.key` (`prefix` is `tls` or `tls.sni[N]`); errors name the key and the file.
pub fn load_keyed(prefix: &str, cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_cert_chain(cert).map_err(TlsError::at(format!("{prefix}.cert")))?;
    let key_error = TlsError::at(format!("{prefix}.key"));
    let key_der = match load_private_key(key) {
        Ok(der) => der,
        Err(error) => return Err(key_error(error)),
    };
    let signing_key = match provider().key_provider.load_private_key(key_der) {
        Ok(signing_key) => signing_key,
        Err(error) => {
            return Err(key_error(TlsError::Pem {
                path: key.display().to_string(),
                reason: error.to_string(),
            }))
        }
    };
    let certified = CertifiedKey::new(chain, signing_key);
    if let Err(e) = certified.keys_match() {
        return Err(key_error(TlsError::Pem {
            path: key.display().to_string(),
            reason: format!("key does not match certificate {}: {e}", cert.display()),
        }));
    }
    Ok(Arc::new(certified))
}

/// Reads the leaf of `certified` (loaded from `path`, configuration key `key`): refuses it
/// when expired unless `allow_expired`, and returns what it says.
pub(super) fn leaf_info(
    key: &str,
    path: &Path,
    certified: &CertifiedKey,
    allow_expired: bool,
) -> Result<crate::certinfo::CertInfo, TlsError> {
    let unparsable = |reason: String| {
        TlsError::at(key.to_string())(TlsError::Pem {
            path: path.display().to_string(),
            reason: format!("unparsable certificate: {reason}"),
        })
    };
    let leaf = certified
        .cert
        .first()
        .ok_or_else(|| unparsable("empty chain".into()))?;
    let info = crate::certinfo::inspect(leaf).map_err(unparsable)?;
    if info.expired() {
        if !allow_expired {
            return Err(TlsError::Expired {
                key: key.to_string(),
                path: path.display().to_string(),
                not_after: info.not_after.clone(),
            });
        }
        tracing::warn!(certificate = %path.display(), not_after = %info.not_after, "serving an EXPIRED certificate ([tls] allow_expired = true)");
    }
    Ok(info)
}
