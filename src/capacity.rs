//! How many sessions the process can hold open: the open-file limit.
//!
//! Each session holds two descriptors (client and backend) plus a short-lived one per clamd
//! scan. The soft `RLIMIT_NOFILE` is often 1024 while the hard limit is far higher, so at start
//! the soft limit is raised to the hard one (the systemd unit sets `LimitNOFILE`), and the
//! resulting capacity is logged beside `max_connections`.

/// Descriptors kept aside for listeners, the metrics endpoint, clamd, logs and files.
const RESERVED_FILES: u64 = 64;
/// Descriptors one session holds (client and backend).
const FILES_PER_SESSION: u64 = 2;

/// The open-file limit after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
}

impl FileLimit {
    /// Sessions that fit in the limit.
    pub fn sessions(&self) -> u64 {
        self.now.saturating_sub(RESERVED_FILES) / FILES_PER_SESSION
    }
}

/// Raises the soft open-file limit to the hard limit; the error says why it could not.
pub fn raise_open_file_limit() -> std::io::Result<FileLimit> {
    let (before, _) = rlimit::Resource::NOFILE.get()?;
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(FileLimit { before, now })
}

/// Logs the capacity against `max_connections` (a warning when it does not fit).
pub fn log_capacity(limit: std::io::Result<FileLimit>, max_connections: u64) {
    match limit {
        Ok(limit) if limit.sessions() < max_connections => tracing::warn!(
            open_files = limit.now,
            sessions = limit.sessions(),
            max_connections,
            "the open-file limit holds fewer sessions than max_connections: raise LimitNOFILE"
        ),
        Ok(limit) => tracing::info!(
            open_files_before = limit.before,
            open_files = limit.now,
            sessions = limit.sessions(),
            "open-file limit raised to the hard limit"
        ),
        Err(error) => tracing::warn!(%error, "could not read or raise the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let limit = raise_open_file_limit().expect("getrlimit");
        let (soft, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
        assert_eq!((limit.now, soft), (soft, soft));
        assert!(soft == hard || soft >= 1 << 20, "soft {soft} hard {hard}");
        assert_eq!(
            FileLimit {
                before: 0,
                now: 1024
            }
            .sessions(),
            (1024 - RESERVED_FILES) / 2
        );
    }
}
