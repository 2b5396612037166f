use super::*;

fn request<'a>(user: &'a str, password: &'a str) -> AuthRequest<'a> {
    AuthRequest {
        protocol: "imap",
        user,
        password,
        attempt: 2,
        client_ip: "192.0.2.42".parse().unwrap(),
        client_tls: true,
    }
}

#[test]
fn urls() {
    let url = HttpUrl::parse("http://127.0.0.1:9000/auth?x=1").unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.path.as_str()),
        ("127.0.0.1", 9000, "/auth?x=1")
    );
    assert_eq!(url.host_header(), "127.0.0.1:9000");
    let url = HttpUrl::parse("http://auth.example").unwrap();
    assert_eq!((url.port, url.path.as_str()), (80, "/"));
    assert_eq!(url.host_header(), "auth.example");
    let url = HttpUrl::parse("http://[::1]:81/a").unwrap();
    assert_eq!((url.host.as_str(), url.port), ("::1", 81));
    assert_eq!(url.host_header(), "[::1]:81");
    for bad in [
        "https://x/auth",
        "x:80/auth",
        "http://:80/",
        "http://x:http/",
        "http://x:70000/",
        "http://[::1/",
        "http://x/a b",
    ] {
        assert!(HttpUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn escaping_matches_nginx_and_round_trips() {
    assert_eq!(escape("alice@example.org"), "alice@example.org");
    assert_eq!(escape("p a%s\"s'\r\n"), "p%20a%25s%22s%27%0D%0A");
    assert_eq!(escape("grüß"), "gr%C3%BC%C3%9F");
    assert_eq!(escape("a+b/c=d&e"), "a+b/c=d&e");
    for value in ["p a%s\"s'", "grüß", "100%", "%zz", ""] {
        assert_eq!(unescape(&escape(value)), value.as_bytes());
    }
    assert_eq!(unescape("%4"), b"%4");
    assert_eq!(unescape("%zz%41"), b"%zzA");
}

#[test]
fn request_is_what_nginx_sends() {
    let url = HttpUrl::parse("http://127.0.0.1:9000/auth").unwrap();
    let mut extra = BTreeMap::new();
    extra.insert("X-Auth-Key".to_string(), "secret".to_string());
    let bytes = encode_request(&url, &request("bob smith", "p%ss word"), &extra);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "GET /auth HTTP/1.0\r\nHost: 127.0.0.1:9000\r\nAuth-Method: plain\r\n\
         Auth-User: bob%20smith\r\nAuth-Pass: p%25ss%20word\r\nAuth-Protocol: imap\r\n\
         Auth-Login-Attempt: 2\r\nClient-IP: 192.0.2.42\r\nClient-Host: [UNAVAILABLE]\r\n\
         Auth-SSL: on\r\nX-Auth-Key: secret\r\n\r\n"
    );
    let plain = AuthRequest {
        client_tls: false,
        ..request("a", "b")
    };
    let text = String::from_utf8(encode_request(&url, &plain, &BTreeMap::new())).unwrap();
    assert!(!text.contains("Auth-SSL"));
    // A header injection through the credentials is impossible: CR and LF are escaped.
    let text = String::from_utf8(encode_request(
        &url,
        &request("a\r\nAuth-Status: OK", "b"),
        &BTreeMap::new(),
    ))
    .unwrap();
    assert_eq!(text.matches("\r\n").count(), 11);
}

#[test]
fn ok_answers() {
    let answer = parse_response(
        b"HTTP/1.0 200 OK\r\nauth-status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\n\r\nbody ignored",
    )
    .unwrap();
    assert_eq!(
        answer,
        AuthAnswer::Ok {
            server: "127.0.0.1".into(),
            port: 143,
            user: None,
            password: None
        }
    );
    let answer = parse_response(
        b"HTTP/1.1 200 OK\nAuth-Status: OK\nAuth-Server: 10.0.0.2\nAuth-Port: 110\nAuth-User: bob\nAuth-Pass: p%20w\n\n",
    )
    .unwrap();
    assert_eq!(
        answer,
        AuthAnswer::Ok {
            server: "10.0.0.2".into(),
            port: 110,
            user: Some("bob".into()),
            // Taken verbatim, as nginx does.
            password: Some("p%20w".into())
        }
    );
}

#[test]
fn failed_answers() {
    let answer = parse_response(
        b"HTTP/1.0 200 OK\r\nAuth-Status: Invalid login or password\r\nAuth-Wait: 3\r\nAuth-Error-Code: 535 5.7.8\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        answer,
        AuthAnswer::Failed {
            message: "Invalid login or password".into(),
            wait: Some(Duration::from_secs(3)),
            code: Some("535 5.7.8".into())
        }
    );
    let answer =
        parse_response(b"HTTP/1.0 200 OK\r\nAuth-Status: No\x01 way\r\nAuth-Wait: 99999\r\n\r\n")
            .unwrap();
    assert_eq!(
        answer,
        AuthAnswer::Failed {
            message: "No way".into(),
            wait: Some(MAX_WAIT),
            code: None
        }
    );
}

#[test]
fn unusable_answers() {
    let cases: [(&[u8], AuthHttpError); 6] = [
        (
            b"HTTP/1.0 500 Oops\r\n\r\n",
            AuthHttpError::Status("HTTP/1.0 500 Oops".into()),
        ),
        (b"garbage\r\n\r\n", AuthHttpError::Status("garbage".into())),
        (b"HTTP/1.0 200 OK\r\n\r\n", AuthHttpError::NoStatus),
        (
            b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Port: 143\r\n\r\n",
            AuthHttpError::NoServer,
        ),
        (
            b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: h\r\nAuth-Port: 0\r\n\r\n",
            AuthHttpError::NoServer,
        ),
        (
            b"HTTP/1.0 200 OK\r\nno colon\r\n\r\n",
            AuthHttpError::Header,
        ),
    ];
    for (bytes, error) in cases {
        assert_eq!(
            parse_response(bytes),
            Err(error),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let long = vec![b'x'; MAX_RESPONSE_HEAD + 1];
    assert_eq!(parse_response(&long), Err(AuthHttpError::TooLong));
}

#[test]
fn head_end_finds_the_blank_line() {
    assert_eq!(head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody"), Some(25));
    assert_eq!(head_end(b"HTTP/1.0 200 OK\nA: b\n\nbody"), Some(22));
    assert_eq!(head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n"), None);
}
