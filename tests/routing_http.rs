//! The `http` router against a small nginx-style `auth_http` service written here, in front of
//! two real Dovecots: OK answers route IMAP and POP3 logins (with `Auth-User` rewriting), the
//! request carries nginx's headers (URL-escaped credentials), OK answers are cached, a wrong
//! password (`Auth-Status: Invalid login`, `Auth-Wait: 1`) is a failed login after the wait,
//! an undeclared server is refused, and a service that is down or too slow gives
//! `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]`.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use support::ports::ClosedPort;
use support::proxy::{tls_section, TestProxy};
use support::routing::{imap_client, imap_subject, routed_listener, subject, TwoServers};
use support::scanning::retrieve;

/// Requests the service received: their headers, names lower-cased.
type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// An `auth_http` service on an ephemeral port: `answer` maps request headers to the response
/// header lines (after `HTTP/1.0 200 OK`); `delay` is slept before answering.
fn auth_service<F>(answer: F, delay: Duration) -> (u16, Seen)
where
    F: Fn(&HashMap<String, String>) -> String + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut headers = HashMap::new();
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            headers.insert(":request".to_string(), request_line.trim_end().to_string());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(": ") {
                    headers.insert(name.to_ascii_lowercase(), value.to_string());
                }
            }
            record.lock().unwrap().push(headers.clone());
            std::thread::sleep(delay);
            let response = format!("HTTP/1.0 200 OK\r\n{}\r\n", answer(&headers));
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    (port, seen)
}

/// The service's decisions: passwords per user, and where each user lives.
fn nginx_like(servers: &TwoServers) -> impl Fn(&HashMap<String, String>) -> String + Send {
    let (old_imap, new_imap) = (servers.old.imap_port, servers.new.imap_port);
    let (old_pop3, new_pop3) = (servers.old.pop3_port, servers.new.pop3_port);
    move |h: &HashMap<String, String>| {
        let user = h.get("auth-user").map(String::as_str).unwrap_or("");
        let pass = h.get("auth-pass").map(String::as_str).unwrap_or("");
        let imap = h.get("auth-protocol").map(String::as_str) == Some("imap");
        let (old, new) = if imap {
            (old_imap, new_imap)
        } else {
            (old_pop3, new_pop3)
        };
        match (user, pass) {
            ("alice", "wonderland-Pass1") => {
                format!("Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: {old}\r\n")
            }
            ("bob@example.org", "bob%20pass%251") => {
                format!("Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: {new}\r\n")
            }
            // An alias the service maps to the real mailbox name.
            ("c", "carol-Pass1") => format!(
                "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: {new}\r\nAuth-User: carol@example.org\r\n"
            ),
            ("stray", _) => "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 9\r\n".into(),
            _ => "Auth-Status: Invalid login\r\nAuth-Wait: 1\r\n".into(),
        }
    }
}

fn config(servers: &TwoServers, url: &str, extra: &str) -> String {
    tls_section(&servers.old)
        + &routed_listener("imaps", "imap", "auth")
        + &routed_listener("pop3s", "pop3", "auth")
        + &servers.backends()
        + &format!(
            "[[router]]\nname = \"auth\"\nkind = \"http\"\nurl = {url:?}\ntimeout = \"1s\"\n{extra}\n"
        )
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[test]
fn an_auth_http_service_routes_logins() {
    let servers = TwoServers::start();
    let (port, seen) = auth_service(nginx_like(&servers), Duration::ZERO);
    let url = format!("http://127.0.0.1:{port}/mail/auth");
    let proxy = TestProxy::start(&config(
        &servers,
        &url,
        "cache_ttl = \"60s\"\nheaders = { X-Auth-Key = \"s3cret\" }",
    ));
    let old = &servers.old;

    let mut client = imap_client(proxy.port(0), old);
    let (_, status) = client.imap("l", "LOGIN alice wonderland-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("old", "alice"));
    {
        let seen = seen.lock().unwrap();
        let request = &seen[0];
        assert_eq!(request[":request"], "GET /mail/auth HTTP/1.0");
        for (name, value) in [
            ("host", format!("127.0.0.1:{port}").as_str()),
            ("auth-method", "plain"),
            ("auth-user", "alice"),
            ("auth-pass", "wonderland-Pass1"),
            ("auth-protocol", "imap"),
            ("auth-login-attempt", "1"),
            ("client-ip", "127.0.0.1"),
            ("auth-ssl", "on"),
            ("x-auth-key", "s3cret"),
        ] {
            assert_eq!(request.get(name).map(String::as_str), Some(value), "{name}");
        }
    }

    // A password with a space and a `%` travels URL-escaped; SASL-IR names the user.
    let mut client = imap_client(proxy.port(0), old);
    let ir = plain("bob@example.org", "bob pass%1");
    let (_, status) = client.imap("a", &format!("AUTHENTICATE PLAIN {ir}"));
    assert!(status.starts_with("a OK"), "{status}");
    assert_eq!(imap_subject(&mut client), subject("new", "bob@example.org"));

    // Auth-User rewriting, over POP3.
    let mut client = support::raw::connect_tls(proxy.port(1), &old.ca);
    client.read_line();
    assert!(client.pop3("USER c").starts_with("+OK"));
    assert!(client.pop3("PASS carol-Pass1").starts_with("+OK"));
    let (_, body) = retrieve(&mut client, "RETR 1");
    assert_eq!(
        support::routing::header_subject(&body),
        subject("new", "carol@example.org")
    );
    assert_eq!(
        seen.lock().unwrap().last().unwrap()["auth-protocol"],
        "pop3"
    );

    // The same login again comes from the cache; another password asks the service.
    let asked = seen.lock().unwrap().len();
    let mut client = imap_client(proxy.port(0), old);
    let (_, status) = client.imap("l", "LOGIN alice wonderland-Pass1");
    assert!(status.starts_with("l OK"), "{status}");
    assert_eq!(seen.lock().unwrap().len(), asked, "cached answer not used");

    // A wrong password: the service says so with Auth-Wait: 1; a failed login after the wait,
    // and the second attempt of the session says so in Auth-Login-Attempt.
    let mut client = imap_client(proxy.port(0), old);
    let started = Instant::now();
    let (_, status) = client.imap("l", "LOGIN alice wrong");
    assert!(
        status.starts_with("l NO [AUTHENTICATIONFAILED] Invalid login"),
        "{status}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(seen.lock().unwrap().len(), asked + 1);
    let (_, status) = client.imap("m", "LOGIN alice wonderland-Pass1");
    assert!(status.starts_with("m OK"), "{status}");
    let mut client = support::raw::connect_tls(proxy.port(1), &old.ca);
    client.read_line();
    assert!(client.pop3("USER bob@example.org").starts_with("+OK"));
    let status = client.pop3("PASS nope");
    assert!(status.starts_with("-ERR [AUTH] Invalid login"), "{status}");
    let status = client.pop3(&format!("AUTH PLAIN {}", plain("alice", "also wrong")));
    assert!(status.starts_with("-ERR [AUTH]"), "{status}");
    assert_eq!(
        seen.lock().unwrap().last().unwrap()["auth-login-attempt"],
        "2"
    );

    // A server that is no declared backend is refused.
    let mut client = imap_client(proxy.port(0), old);
    let (_, status) = client.imap("l", "LOGIN stray whatever");
    assert!(status.starts_with("l NO [UNAVAILABLE]"), "{status}");

    let metrics = portcullis::metrics::render();
    for outcome in ["routed", "cached", "rejected", "undeclared"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("portcullis_route_decisions_total")
                    && l.contains("router=\"auth\"")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .unwrap_or_else(|| panic!("{outcome} missing"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
}

#[test]
fn an_auth_service_that_is_down_or_slow_makes_logins_unavailable() {
    let servers = TwoServers::start();
    let old = &servers.old;
    let closed = ClosedPort::new();
    let down = TestProxy::start(&config(
        &servers,
        &format!("http://127.0.0.1:{}/auth", closed.port()),
        "",
    ));
    let (port, _) = auth_service(nginx_like(&servers), Duration::from_secs(3));
    let slow = TestProxy::start(&config(
        &servers,
        &format!("http://127.0.0.1:{port}/auth"),
        "",
    ));
    for proxy in [&down, &slow] {
        let mut client = imap_client(proxy.port(0), old);
        let started = Instant::now();
        let (_, status) = client.imap("l", "LOGIN alice wonderland-Pass1");
        assert!(status.starts_with("l NO [UNAVAILABLE]"), "{status}");
        assert!(started.elapsed() < Duration::from_millis(2500));
        // The session goes on: the client may try again.
        let (_, status) = client.imap("n", "NOOP");
        assert!(status.starts_with("n OK"), "{status}");

        let mut client = support::raw::connect_tls(proxy.port(1), &old.ca);
        client.read_line();
        assert!(client.pop3("USER alice").starts_with("+OK"));
        let status = client.pop3("PASS wonderland-Pass1");
        assert!(status.starts_with("-ERR [SYS/TEMP]"), "{status}");
    }
}

/// nginx's mail module (a test dependency) in front of the same two Dovecots, asking the same
/// `auth_http` service: the service written for nginx routes portcullis's logins the same way,
/// and both send it the same headers.
#[test]
fn the_service_nginx_uses_routes_portcullis_the_same_way() {
    const NGINX: &str = "/usr/sbin/nginx";
    const MAIL_MODULE: &str = "/usr/lib/nginx/modules/ngx_mail_module.so";
    assert!(
        std::path::Path::new(NGINX).exists() && std::path::Path::new(MAIL_MODULE).exists(),
        "nginx and its mail module are test dependencies (scripts/install-test-deps.sh)"
    );
    let servers = TwoServers::start();
    let (port, seen) = auth_service(nginx_like(&servers), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let nginx_port = support::ports::free_port();
    let ca = &servers.old.ca;
    let quoted = |p: std::path::PathBuf| format!("{:?}", p.display().to_string());
    let conf = format!(
        "load_module {MAIL_MODULE};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 64; }}\n\
         mail {{\n  server_name localhost;\n  auth_http 127.0.0.1:{port}/mail/auth;\n\
         ssl_certificate {cert};\n  ssl_certificate_key {key};\n\
         server {{ listen 127.0.0.1:{nginx_port} ssl; protocol imap; }}\n}}\n",
        pid = quoted(dir.path().join("nginx.pid")),
        log = quoted(dir.path().join("error.log")),
        cert = quoted(ca.cert_path()),
        key = quoted(ca.key_path()),
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut nginx = std::process::Command::new(NGINX)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&path)
        .spawn()
        .expect("start nginx");
    let listening = support::ports::wait_for_port(nginx_port, Duration::from_secs(10));
    let through_nginx = listening.then(|| {
        let mut client = imap_client(nginx_port, &servers.old);
        let (_, status) = client.imap("l", "LOGIN alice wonderland-Pass1");
        assert!(status.starts_with("l OK"), "nginx: {status}");
        imap_subject(&mut client)
    });
    let _ = nginx.kill();
    let _ = nginx.wait();
    let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    let through_nginx = through_nginx.unwrap_or_else(|| panic!("nginx did not listen: {log}"));
    assert_eq!(through_nginx, subject("old", "alice"));

    let url = format!("http://127.0.0.1:{port}/mail/auth");
    let proxy = TestProxy::start(&config(&servers, &url, ""));
    let mut client = imap_client(proxy.port(0), &servers.old);
    let (_, status) = client.imap("l", "LOGIN alice wonderland-Pass1");
    assert!(status.starts_with("l OK"), "portcullis: {status}");
    assert_eq!(imap_subject(&mut client), through_nginx);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for header in [
        "auth-method",
        "auth-user",
        "auth-pass",
        "auth-protocol",
        "auth-login-attempt",
    ] {
        assert_eq!(
            seen[0].get(header),
            seen[1].get(header),
            "{header}: nginx sent {:?}, portcullis {:?}",
            seen[0].get(header),
            seen[1].get(header)
        );
    }
    assert_eq!(seen[0].get(":request"), seen[1].get(":request"));
}
