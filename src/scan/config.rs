//! Configuration of the scan pipeline (the `[scan]` table of the portcullis configuration).
//!
//! Every key has a default, unknown keys are rejected, and [`ScanConfig::validate`] reports
//! problems naming the offending key (`scan.max_size: ...`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors found while validating a [`ScanConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("scan.{key}: {problem}")]
pub struct ConfigError {
    /// The offending key, without the `scan.` prefix.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// What to do when a message cannot be scanned (scanner down, timeout, bad reply, quarantine failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Deliver nothing; the client retries later (IMAP `NO [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`).
    #[default]
    Tempfail,
    /// Deliver the unscanned original (counted).
    Pass,
    /// Quarantine the original and deliver a replacement.
    Block,
}

/// What to do with a message larger than `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnOversize {
    /// Deliver the unscanned original (counted).
    #[default]
    Pass,
    /// Deliver nothing; temporary failure.
    Tempfail,
    /// Quarantine the original and deliver a replacement.
    Block,
}

/// A clamd endpoint: `tcp://host:port` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdEndpoint {
    /// TCP `host:port`.
    Tcp(String),
    /// Unix domain socket path.
    Unix(PathBuf),
}

impl ClamdEndpoint {
    /// Parses `tcp://host:port` or `unix:/path`.
    pub fn parse(text: &str) -> Result<ClamdEndpoint, String> {
        if let Some(rest) = text.strip_prefix("tcp://") {
            let port_ok = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            return match port_ok {
                true => Ok(ClamdEndpoint::Tcp(rest.to_string())),
                false => Err(format!("'{text}' is not tcp://host:port")),
            };
        }
        if let Some(rest) = text.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.starts_with('/') {
                return Ok(ClamdEndpoint::Unix(PathBuf::from(path)));
            }
            return Err(format!("'{text}' is not unix:/absolute/path"));
        }
        Err(format!("'{text}' must start with tcp:// or unix:"))
    }
}

impl fmt::Display for ClamdEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClamdEndpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            ClamdEndpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A duration written in humantime syntax (`30s`, `5m`, `1h 30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration '{text}': {e}")))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A byte size: a plain integer, or a string like `25MiB`, `64KiB`, `1GiB`, `1000B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `123`, `123B`, `64KiB`, `25MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB` as binary units).
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size '{text}'"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => return Err(format!("unknown size unit '{other}' in '{text}'")),
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("size '{text}' is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    /// Plain octets: exact, and read back as they are.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

/// The `[scan]` configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// clamd endpoints tried in order (`tcp://host:port`, `unix:/path`); empty = built-in EICAR check only.
    pub clamd: Vec<String>,
    /// Timeout of one whole scan (send + reply).
    pub timeout: HumanDuration,
    /// Timeout of connecting to one clamd endpoint.
    pub connect_timeout: HumanDuration,
    /// Larger messages are not scanned; `on_oversize` applies.
    pub max_size: ByteSize,
    /// Policy when scanning fails.
    pub on_error: OnError,
    /// Policy for messages larger than `max_size`.
    pub on_oversize: OnOversize,
    /// Where originals of blocked/stripped messages are kept.
    pub quarantine_dir: PathBuf,
    /// Bound of the verdict and message-index caches (entries).
    pub cache_entries: u64,
    /// Bound of the cache of modified/replacement message bytes.
    pub cache_bytes: ByteSize,
    /// Optional notice template for replacements (see `deploy/notice.txt`).
    pub notice: Option<PathBuf>,
    /// Scan messages uploaded with IMAP APPEND.
    pub scan_append: bool,
    /// POP3: scan every message whose verdict is not cached when `LIST` or `STAT` first asks
    /// for sizes, so they show what `RETR` will serve (bounded per command; IMAP always needs
    /// the verdict for sizes and structure).
    pub scan_on_structure: bool,
    /// Directory of `*.toml` rule files; unset means the built-in rules.
    pub rules_dir: Option<PathBuf>,
    /// Whom to contact, shown in notices.
    pub contact: String,
    /// INSTREAM chunk size.
    pub chunk_size: ByteSize,
    /// How often clamd's signature version is polled (a change flushes the caches).
    pub version_check_interval: HumanDuration,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            clamd: Vec::new(),
            timeout: HumanDuration(Duration::from_secs(30)),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            max_size: ByteSize(25 << 20),
            on_error: OnError::Tempfail,
            on_oversize: OnOversize::Pass,
            quarantine_dir: PathBuf::from("/var/lib/portcullis/quarantine"),
            cache_entries: 100_000,
            cache_bytes: ByteSize(256 << 20),
            notice: None,
            scan_append: false,
            scan_on_structure: false,
            rules_dir: None,
            contact: "your administrator".to_string(),
            chunk_size: ByteSize(64 << 10),
            version_check_interval: HumanDuration(Duration::from_secs(600)),
        }
    }
}

/// Largest INSTREAM chunk accepted (clamd itself rejects chunks beyond StreamMaxLength).
const MAX_CHUNK: u64 = 16 << 20;

fn problem(key: &'static str, text: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: text.into(),
    }
}

impl ScanConfig {
    /// Parsed clamd endpoints (call [`ScanConfig::validate`] first for good messages).
    pub fn endpoints(&self) -> Result<Vec<ClamdEndpoint>, ConfigError> {
        self.clamd
            .iter()
            .map(|text| ClamdEndpoint::parse(text).map_err(|e| problem("clamd", e)))
            .collect()
    }

    /// Checks semantic constraints; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.endpoints()?;
        let durations = [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
            ("version_check_interval", self.version_check_interval),
        ];
        for (key, value) in durations {
            if value.0.is_zero() {
                return Err(problem(key, "must be greater than zero"));
            }
        }
        if self.max_size.0 == 0 || self.max_size.0 > u64::from(u32::MAX) {
            return Err(problem("max_size", "must be between 1 byte and 4GiB"));
        }
        if self.chunk_size.0 == 0 || self.chunk_size.0 > MAX_CHUNK {
            return Err(problem("chunk_size", "must be between 1 byte and 16MiB"));
        }
        if self.cache_entries == 0 {
            return Err(problem("cache_entries", "must be at least 1"));
        }
        if self.cache_bytes.0 == 0 {
            return Err(problem("cache_bytes", "must be at least 1 byte"));
        }
        if self.contact.trim().is_empty() || self.contact.contains(['\r', '\n']) {
            return Err(problem("contact", "must be a non-empty single line"));
        }
        if self.quarantine_dir.as_os_str().is_empty() {
            return Err(problem("quarantine_dir", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parse() {
        let cfg: ScanConfig = toml::from_str(
            "clamd = [\"tcp://127.0.0.1:3310\", \"unix:/run/clamd.sock\"]\nmax_size = \"10MiB\"\non_error = \"block\"\ntimeout = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(cfg.max_size.0, 10 << 20);
        assert_eq!(cfg.on_error, OnError::Block);
        assert_eq!(cfg.timeout.0, Duration::from_secs(60));
        assert_eq!(cfg.connect_timeout.0, Duration::from_secs(5));
        assert_eq!(cfg.chunk_size.0, 64 << 10);
        assert!(!cfg.scan_on_structure, "off by default");
        assert_eq!(
            cfg.endpoints().unwrap()[1],
            ClamdEndpoint::Unix("/run/clamd.sock".into())
        );
        cfg.validate().unwrap();
    }

    #[test]
    fn scan_on_structure_parses() {
        let cfg: ScanConfig = toml::from_str("scan_on_structure = true\n").unwrap();
        assert!(cfg.scan_on_structure);
        assert!(toml::from_str::<ScanConfig>("scan_on_structure = \"yes\"\n").is_err());
    }

    #[test]
    fn unknown_key_rejected() {
        assert!(toml::from_str::<ScanConfig>("max_sise = 3").is_err());
        assert!(toml::from_str::<ScanConfig>("on_error = \"maybe\"").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64KiB").unwrap().0, 65536);
        assert_eq!(ByteSize::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("123").unwrap().0, 123);
        assert!(ByteSize::parse("12XB").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn validate_names_key() {
        let cfg = ScanConfig {
            max_size: ByteSize(0),
            ..ScanConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("scan.max_size:"));
        let cfg = ScanConfig {
            clamd: vec!["127.0.0.1:3310".into()],
            ..ScanConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("scan.clamd:"));
    }
}
