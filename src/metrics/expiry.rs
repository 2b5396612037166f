//! `portcullis_tls_certificate_expiry_seconds`: seconds until each served certificate's
//! notAfter time. The notAfter times are set at start and on every reload; the gauge is
//! recomputed on every render, so it counts down between reloads.

use super::Metrics;

impl Metrics {
    /// Replaces the served certificates behind `tls_certificate_expiry_seconds` (at start and
    /// after every reload): `(label, notAfter as Unix time)`; series of certificates no
    /// longer served disappear.
    pub fn set_certificates(&self, certificates: &[(String, i64)]) {
        let mut slot = match self.certificate_not_after.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = certificates.to_vec();
        self.tls_certificate_expiry_seconds.reset();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        for (label, not_after) in slot.iter() {
            self.tls_certificate_expiry_seconds
                .with_label_values(&[label.as_str()])
                .set(not_after.saturating_sub(now));
        }
    }

    /// Recomputes `tls_certificate_expiry_seconds` for the current time.
    pub(super) fn refresh_certificate_expiry(&self) {
        let certificates = match self.certificate_not_after.lock() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if !certificates.is_empty() {
            self.set_certificates(&certificates);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_expiry_counts_down_and_is_replaced_on_reload() {
        let m = Metrics::new().unwrap();
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        m.set_certificates(&[
            ("/etc/a.pem".into(), now + 1000),
            ("/etc/b.pem".into(), now - 5),
        ]);
        let a = m
            .tls_certificate_expiry_seconds
            .with_label_values(&["/etc/a.pem"]);
        assert!((990..=1000).contains(&a.get()), "{}", a.get());
        m.set_certificates(&[("/etc/c.pem".into(), now + 50)]);
        let text = m.render();
        assert!(!text.contains("/etc/a.pem"), "{text}");
        assert!(
            text.contains("portcullis_tls_certificate_expiry_seconds{certificate=\"/etc/c.pem\"}"),
            "{text}"
        );
    }
}
