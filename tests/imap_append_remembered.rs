//! A message appended through the proxy and found clean is remembered under the UID the server
//! stored it as (`OK [APPENDUID …]`, RFC 4315), so a FETCH of its size or structure right after
//! (what clients do after saving a draft or a sent message) is planned from the cache instead
//! of downloading the message again. One test in this binary: it reads the process-wide cache
//! counters.

mod support;

use support::clamd::Clamd;
use support::corpus;
use support::dovecot::Dovecot;
use support::scanning::{clamd_endpoint, imap_login, scan_section, start_imap};

fn cache_misses() -> u64 {
    portcullis::metrics::metrics()
        .scan_cache
        .with_label_values(&["miss"])
        .get()
}

#[test]
fn a_clean_append_is_fetched_from_the_cache_under_its_appenduid() {
    let dovecot = Dovecot::start();
    let clamd = Clamd::start();
    let dir = tempfile::tempdir().expect("dir");
    let scan = scan_section(
        &clamd_endpoint(&clamd),
        dir.path(),
        Some("rules"),
        "scan_append = true",
    );
    let proxy = start_imap(&dovecot, &scan);
    let mut client = imap_login(proxy.port(0), &dovecot, "SELECT");
    let clean = &corpus::clean_messages()[3].1;
    let mut command = format!("a APPEND INBOX {{{}+}}\r\n", clean.len()).into_bytes();
    command.extend_from_slice(clean);
    command.extend_from_slice(b"\r\n");
    client.send_raw(&command);
    let status = loop {
        let line = client.read_line();
        if line.starts_with("a ") {
            break line;
        }
    };
    let code = status
        .strip_prefix("a OK [APPENDUID ")
        .unwrap_or_else(|| panic!("Dovecot answers APPENDUID: {status}"));
    let uid: u32 = code
        .split([' ', ']'])
        .nth(1)
        .and_then(|uid| uid.parse().ok())
        .expect("the UID");
    // The mailbox is selected: the new message shows up, then its size is asked for.
    client.imap("n", "NOOP");
    let misses = cache_misses();
    let (responses, status) = client.imap("f", &format!("UID FETCH {uid} (RFC822.SIZE)"));
    assert!(status.starts_with("f OK"), "{status}");
    assert_eq!(
        cache_misses(),
        misses,
        "the FETCH was planned from the remembered verdict"
    );
    let size = format!("RFC822.SIZE {}", clean.len());
    assert!(
        responses.iter().any(|r| r.text().contains(&size)),
        "the size of the message as appended: {:?}",
        responses.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
    // An infected upload is refused, so there is nothing to remember (and nothing stored).
    let infected = &corpus::infected_messages()[1].1;
    let mut command = format!("b APPEND INBOX {{{}+}}\r\n", infected.len()).into_bytes();
    command.extend_from_slice(infected);
    command.extend_from_slice(b"\r\n");
    client.send_raw(&command);
    let status = loop {
        let line = client.read_line();
        if line.starts_with("b ") {
            break line;
        }
    };
    assert!(status.starts_with("b NO [CANNOT]"), "{status}");
}
