//! APPEND scanning on the IMAP path (`scan_append = true`): infected uploads are refused with
//! `NO [CANNOT]` and never reach the backend, clean ones are stored unchanged, with and without
//! LITERAL+ on the backend side.

mod support;

use support::corpus;
use support::raw;
use support::scanning::{append, scan_section, AppendScanning};

#[test]
fn scan_append_refuses_infected_uploads() {
    let mut setup = AppendScanning::start();
    let (dovecot, client) = (&setup.dovecot, &mut setup.client);
    let infected = &corpus::infected_messages()[1].1;
    let clean = &corpus::clean_messages()[3].1;
    let status = append(client, "a1", infected, true);
    assert!(
        status.starts_with("a1 NO [CANNOT]") && status.contains("EICAR"),
        "{status}"
    );
    let status = append(client, "a2", infected, false);
    assert!(status.starts_with("a2 NO [CANNOT]"), "{status}");
    let status = append(client, "a3", clean, true);
    assert!(status.starts_with("a3 OK"), "{status}");
    let status = append(client, "a4", clean, false);
    assert!(status.starts_with("a4 OK"), "{status}");
    let mut direct = support::proxy::direct_imap(dovecot);
    let (responses, _) = direct.imap("f", "FETCH 1:* BODY.PEEK[]");
    let stored: Vec<Vec<u8>> = responses.iter().flat_map(|r| r.literals.clone()).collect();
    assert_eq!(
        stored,
        vec![clean.clone(), clean.clone()],
        "only the clean uploads reached Dovecot"
    );
}

#[test]
fn scan_append_waits_for_backends_without_literal_plus() {
    let ca = support::certs::TestCa::new();
    let dir = tempfile::tempdir().expect("dir");
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let port = support::fake::serve(move |tcp| {
        use std::io::{BufReader, Read};
        let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
        let mut writer = tcp;
        support::fake::send(
            &mut writer,
            b"* OK [CAPABILITY IMAP4rev1] no literal plus\r\n",
        );
        loop {
            let line = support::fake::read_line(&mut reader);
            let tag = line.split(' ').next().unwrap_or("").to_string();
            if line.is_empty() {
                return;
            }
            if let Some(size) = support::raw::literal_size(line.as_bytes()) {
                assert!(
                    !line.contains("+}"),
                    "LITERAL+ used with a backend without it"
                );
                support::fake::send(&mut writer, b"+ go ahead\r\n");
                let mut literal = vec![0u8; size + 2];
                reader.read_exact(&mut literal).expect("literal");
                sink.lock().expect("lock").push(literal[..size].to_vec());
            }
            support::fake::send(&mut writer, format!("{tag} OK done\r\n").as_bytes());
        }
    });
    let scan = scan_section("", dir.path(), Some("rules"), "scan_append = true");
    let proxy = support::proxy::imap_to_fake(&ca, port, "none", &scan);
    let mut client = raw::connect_tls(proxy.port(0), &ca);
    client.read_line();
    let (_, status) = client.imap("l", "LOGIN user pass");
    assert!(status.starts_with("l OK"), "{status}");
    let clean = &corpus::clean_messages()[0].1;
    assert!(append(&mut client, "a1", clean, true).starts_with("a1 OK"));
    assert!(
        append(&mut client, "a2", &corpus::infected_messages()[0].1, false)
            .starts_with("a2 NO [CANNOT]")
    );
    assert_eq!(*received.lock().expect("lock"), vec![clean.clone()]);
}
