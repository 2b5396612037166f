//! Unit tests of the PROXY protocol reader, writer and CIDR type.

use super::*;

#[test]
fn cidr_parses_and_matches() {
    let net: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains("10.200.1.2".parse().unwrap()));
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
    let host: Cidr = "127.0.0.1".parse().unwrap();
    assert_eq!(host.to_string(), "127.0.0.1/32");
    assert!(!host.contains("127.0.0.2".parse().unwrap()));
    let any: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(any.contains("192.0.2.1".parse().unwrap()));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
}

#[test]
fn cidr_rejects_nonsense() {
    for bad in [
        "10.0.0.0/33",
        "10.0.0.1/8",
        "example.org/8",
        "::/129",
        "10.0.0.0/x",
        "",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad} accepted");
    }
}

async fn read(bytes: &[u8]) -> (Result<Option<ProxiedAddrs>, ProxyHeaderError>, Vec<u8>) {
    let mut cursor = std::io::Cursor::new(bytes.to_vec());
    let result = read_header(&mut cursor).await;
    let mut rest = Vec::new();
    let _ = cursor.read_to_end(&mut rest).await;
    (result, rest)
}

#[tokio::test]
async fn v1_and_v2_round_trip_without_overreading() {
    let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let local: SocketAddr = "192.0.2.1:993".parse().unwrap();
    for version in [Version::V1, Version::V2] {
        let mut bytes = encode(version, client, local);
        bytes.extend_from_slice(b"\x16\x03\x01TLS");
        let (result, rest) = read(&bytes).await;
        let addrs = result.unwrap().unwrap();
        assert_eq!((addrs.source, addrs.destination), (client, local));
        assert_eq!(rest, b"\x16\x03\x01TLS");
    }
}

#[tokio::test]
async fn v6_and_mixed_families() {
    let client: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let local: SocketAddr = "192.0.2.1:993".parse().unwrap();
    let (result, _) = read(&encode(Version::V2, client, local)).await;
    assert_eq!(result.unwrap().unwrap().source, client);
}

#[tokio::test]
async fn missing_malformed_and_oversized_headers_are_refused() {
    let (result, _) = read(b"* OK hello\r\n").await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Missing)),
        "{result:?}"
    );
    let (result, _) = read(b"PROXY TCP4 1.2.3.4 nonsense\r\n").await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Malformed(_))),
        "{result:?}"
    );
    let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
    let (result, _) = read(long.as_bytes()).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Malformed(_))),
        "{result:?}"
    );
    let mut v2 = V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let (result, _) = read(&v2).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Malformed(_))),
        "{result:?}"
    );
    let (result, _) = read(b"PRO").await;
    assert!(matches!(result, Err(ProxyHeaderError::Io(_))), "{result:?}");
}

#[tokio::test]
async fn v2_local_command_means_no_addresses() {
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::Protocol::Unspecified,
        ppp::v2::Addresses::Unspecified,
    )
    .build()
    .unwrap();
    let (result, _) = read(&header).await;
    assert_eq!(result.unwrap(), None);
}
