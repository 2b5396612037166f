//! The PROXY protocol (HAProxy, versions 1 and 2) on both sides of the proxy.
//!
//! * In: a listener with `proxy_protocol = true` expects a PROXY header as the very first bytes of
//!   every connection, from an address in `trusted_proxies`. [`read_header`] reads exactly the
//!   header's bytes (v1: up to CRLF, at most 107 octets; v2: the 16-octet fixed part plus its
//!   announced length) so that the TLS handshake or protocol greeting that follows is untouched.
//!   Parsing is done by the `ppp` crate.
//! * Out: [`encode`] builds the header the backend connector writes when a backend has
//!   `forward_client_ip = "proxy-v1"` or `"proxy-v2"`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest v1 header, CRLF included (spec §2.1).
const V1_MAX: usize = 107;
/// Signature that opens every v2 header (spec §2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Largest v2 address + TLV block accepted (addresses are at most 216 octets; TLVs are bounded
/// here so a peer cannot make portcullis buffer 64 KiB per connection).
const V2_MAX_PAYLOAD: usize = 1024;

/// Why an incoming PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The socket's peer is not in `trusted_proxies`.
    #[error("PROXY header from untrusted address {0}")]
    Untrusted(IpAddr),
    /// The first bytes are not a PROXY header.
    #[error("missing PROXY header")]
    Missing,
    /// The header did not parse.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// The header did not arrive within the timeout.
    #[error("PROXY header timed out")]
    Timeout,
    /// The connection failed while reading.
    #[error("reading PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32` (a bare address means a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block; IPv4-mapped IPv6 peers match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn mask_eq(net: u128, ip: u128, bits: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (ip >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={bits}"))?,
            None => bits,
        };
        let cidr = Cidr { network, prefix };
        if host_bits_set(network, prefix, bits) {
            return Err(format!("{text:?}: address has bits set beyond the prefix"));
        }
        Ok(cidr)
    }
}

fn host_bits_set(ip: IpAddr, prefix: u8, bits: u8) -> bool {
    let value = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    if prefix == 0 {
        return value != 0;
    }
    let host = u32::from(bits - prefix);
    (value >> host) << host != value
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Cidr, String> {
        text.parse()
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The addresses a PROXY header announced; `None` for `LOCAL`/`UNKNOWN` headers (health checks
/// from the proxy itself), where the socket's own addresses apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedAddrs {
    /// The original client.
    pub source: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
}

/// Reads exactly one PROXY header (v1 or v2) from `stream`; no byte after it is consumed.
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<ProxiedAddrs>, ProxyHeaderError> {
    let mut start = [0u8; 5];
    stream.read_exact(&mut start).await?;
    if &start == b"PROXY" {
        read_v1(stream, start).await
    } else if start == V2_SIGNATURE[..5] {
        read_v2(stream, start).await
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

async fn read_v1<R: AsyncRead + Unpin>(
    stream: &mut R,
    start: [u8; 5],
) -> Result<Option<ProxiedAddrs>, ProxyHeaderError> {
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed(
                "v1 header longer than 107 octets".into(),
            ));
        }
        line.push(stream.read_u8().await?);
    }
    let header = ppp::v1::Header::try_from(line.as_slice())
        .map_err(|e| ProxyHeaderError::Malformed(format!("v1: {e:?}")))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(ProxiedAddrs {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        }),
        ppp::v1::Addresses::Tcp6(a) => Some(ProxiedAddrs {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        }),
        ppp::v1::Addresses::Unknown => None,
    })
}

async fn read_v2<R: AsyncRead + Unpin>(
    stream: &mut R,
    start: [u8; 5],
) -> Result<Option<ProxiedAddrs>, ProxyHeaderError> {
    let mut header = [0u8; 16];
    header[..5].copy_from_slice(&start);
    stream.read_exact(&mut header[5..]).await?;
    if &header[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::Malformed("bad v2 signature".into()));
    }
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if length > V2_MAX_PAYLOAD {
        return Err(ProxyHeaderError::Malformed(format!(
            "v2 payload of {length} octets exceeds {V2_MAX_PAYLOAD}"
        )));
    }
    let mut bytes = header.to_vec();
    bytes.resize(16 + length, 0);
    stream.read_exact(&mut bytes[16..]).await?;
    let parsed = ppp::v2::Header::try_from(bytes.as_slice())
        .map_err(|e| ProxyHeaderError::Malformed(format!("v2: {e:?}")))?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(ProxiedAddrs {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        }),
        ppp::v2::Addresses::IPv6(a) => Some(ProxiedAddrs {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        }),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

/// PROXY protocol version for outgoing headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// Binary header.
    V2,
}

/// Builds a PROXY header announcing `client` connected to `local`. Mixed address families are
/// announced with both mapped to IPv6 so the client's address is never lost.
pub fn encode(version: Version, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = same_family(client, local);
    match version {
        Version::V1 => ppp::v1::Addresses::from((client, local))
            .to_string()
            .into_bytes(),
        Version::V2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (client, local),
        )
        .build()
        .unwrap_or_default(),
    }
}

fn same_family(client: SocketAddr, local: SocketAddr) -> (SocketAddr, SocketAddr) {
    let to_v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if client.is_ipv4() == local.is_ipv4() {
        (client, local)
    } else {
        (to_v6(client), to_v6(local))
    }
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
