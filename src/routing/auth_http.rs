//! nginx's mail `auth_http` protocol, sans I/O: the request the proxy sends
//! ([`encode_request`]) and the answer it reads ([`parse_response`]), so an existing nginx
//! authentication service works unchanged.
//!
//! Request (HTTP/1.0 `GET`, as nginx sends it): `Host`, `Auth-Method: plain`, `Auth-User` and
//! `Auth-Pass` (URL-escaped like nginx: `%`, space, quotes, control and non-ASCII octets),
//! `Auth-Protocol: imap|pop3`, `Auth-Login-Attempt`, `Client-IP`, `Client-Host`, `Auth-SSL`
//! when the client uses TLS, and the configured extra headers. The answer is read from the
//! headers only (the body is ignored): status `200` and `Auth-Status: OK` with `Auth-Server`
//! and `Auth-Port` route the login, optionally with `Auth-User`/`Auth-Pass` (taken verbatim,
//! as nginx does) for the backend; any other `Auth-Status` is the text of a failed login, with
//! `Auth-Wait` seconds to wait before answering the client.

use std::collections::BTreeMap;
use std::time::Duration;

/// Most octets of a response head the proxy reads (the body is never read).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The longest `Auth-Wait` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Longest error text from the service shown to a client.
const MAX_STATUS_TEXT: usize = 200;

/// Why an `auth_http` URL or answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthHttpError {
    /// The configured URL is not `http://host[:port]/path`.
    #[error("url must look like http://host:port/path: {0}")]
    Url(String),
    /// The answer's head is longer than [`MAX_RESPONSE_HEAD`].
    #[error("response head longer than {MAX_RESPONSE_HEAD} octets")]
    TooLong,
    /// The status line is not `HTTP/1.x 200`.
    #[error("unexpected status line {0:?}")]
    Status(String),
    /// A header line without a colon, or not text.
    #[error("malformed header line")]
    Header,
    /// No `Auth-Status` header.
    #[error("no Auth-Status header")]
    NoStatus,
    /// `Auth-Status: OK` without a usable `Auth-Server`/`Auth-Port`.
    #[error("OK without a usable Auth-Server and Auth-Port")]
    NoServer,
}

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 80).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path]`; only plain HTTP (as nginx's `auth_http`).
    pub fn parse(url: &str) -> Result<HttpUrl, AuthHttpError> {
        let bad = || AuthHttpError::Url(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
                None => (authority, 80),
            }
        };
        let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if host.is_empty() || !printable(host) || !printable(path) {
            return Err(bad());
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        match (self.host.contains(':'), self.port) {
            (true, 80) => format!("[{}]", self.host),
            (true, port) => format!("[{}]:{port}", self.host),
            (false, 80) => self.host.clone(),
            (false, port) => format!("{}:{port}", self.host),
        }
    }
}

/// What the request tells the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest<'a> {
    /// `imap` or `pop3`.
    pub protocol: &'a str,
    /// The client's login name.
    pub user: &'a str,
    /// The client's password.
    pub password: &'a str,
    /// Login attempts in this session so far, this one included.
    pub attempt: u32,
    /// The client's address.
    pub client_ip: std::net::IpAddr,
    /// Whether the client connection is TLS.
    pub client_tls: bool,
}

/// Escapes like nginx's `NGX_ESCAPE_MAIL_AUTH`: `%XX` for `%`, space, `"`, `'`, control and
/// non-ASCII octets.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b <= 0x20 || b >= 0x7f || b == b'%' || b == b'"' || b == b'\'' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Undoes [`escape`] (any `%XX`); invalid escapes stay as they are.
pub fn unescape(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The complete request for `request` to `url`, with the configured `extra` headers.
pub fn encode_request(
    url: &HttpUrl,
    request: &AuthRequest<'_>,
    extra: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut out = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nAuth-Method: plain\r\nAuth-User: {}\r\nAuth-Pass: {}\r\n\
         Auth-Protocol: {}\r\nAuth-Login-Attempt: {}\r\nClient-IP: {}\r\nClient-Host: [UNAVAILABLE]\r\n",
        url.path,
        url.host_header(),
        escape(request.user),
        escape(request.password),
        request.protocol,
        request.attempt,
        request.client_ip,
    );
    if request.client_tls {
        out.push_str("Auth-SSL: on\r\n");
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The service's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAnswer {
    /// Route the login to `server:port`.
    Ok {
        /// `Auth-Server` (an address or name, matched against the declared backends).
        server: String,
        /// `Auth-Port`.
        port: u16,
        /// `Auth-User`: the login name for the backend.
        user: Option<String>,
        /// `Auth-Pass`: the password for the backend.
        password: Option<String>,
    },
    /// The login failed: `Auth-Status` text, `Auth-Wait` (bounded by [`MAX_WAIT`]) and
    /// `Auth-Error-Code` (logged only).
    Failed {
        /// The status text (printable ASCII, at most 200 characters).
        message: String,
        /// How long to wait before answering the client; `None` without `Auth-Wait`.
        wait: Option<Duration>,
        /// `Auth-Error-Code`, if any.
        code: Option<String>,
    },
}

/// Where a response head ends: the index after the empty line, if it arrived.
pub fn head_end(buffer: &[u8]) -> Option<usize> {
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses a response head (status line and headers; the body, if present, is ignored).
pub fn parse_response(head: &[u8]) -> Result<AuthAnswer, AuthHttpError> {
    if head.len() > MAX_RESPONSE_HEAD {
        return Err(AuthHttpError::TooLong);
    }
    let head = &head[..head_end(head).unwrap_or(head.len())];
    let text = std::str::from_utf8(head).map_err(|_| AuthHttpError::Header)?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status = lines.next().unwrap_or("");
    let mut words = status.split_ascii_whitespace();
    let version_ok = words.next().is_some_and(|v| v.starts_with("HTTP/1."));
    if !version_ok || words.next() != Some("200") {
        return Err(AuthHttpError::Status(crate::backend::printable(
            status.as_bytes(),
        )));
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(AuthHttpError::Header)?;
        headers
            .entry(name.trim().to_ascii_lowercase())
            .or_insert_with(|| value.trim().to_string());
    }
    let status = headers.get("auth-status").ok_or(AuthHttpError::NoStatus)?;
    if status == "OK" {
        let server = headers
            .get("auth-server")
            .filter(|s| !s.is_empty())
            .ok_or(AuthHttpError::NoServer)?;
        let port = headers
            .get("auth-port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p != 0)
            .ok_or(AuthHttpError::NoServer)?;
        return Ok(AuthAnswer::Ok {
            server: server.clone(),
            port,
            user: headers.get("auth-user").cloned(),
            password: headers.get("auth-pass").cloned(),
        });
    }
    let message: String = status
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_STATUS_TEXT)
        .collect();
    let wait = headers
        .get("auth-wait")
        .and_then(|w| w.parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_WAIT));
    Ok(AuthAnswer::Failed {
        message,
        wait,
        code: headers.get("auth-error-code").cloned(),
    })
}

#[cfg(test)]
#[path = "auth_http_tests.rs"]
mod tests;
