//! A message appended through the proxy and found clean is remembered under the UID the server
//! stored it as (`OK [APPENDUID …]`, RFC 4315), so a FETCH of its size or structure right after
//! (what clients do after saving a draft or a sent message) is planned from the cache instead
//! of downloading the message again. One test in this binary: it reads the process-wide cache
//! counters.

mod support;

use support::corpus;
use support::scanning::{append, AppendScanning};

fn cache_misses() -> u64 {
    portcullis::metrics::metrics()
        .scan_cache
        .with_label_values(&["miss"])
        .get()
}

#[test]
fn a_clean_append_is_fetched_from_the_cache_under_its_appenduid() {
    let mut setup = AppendScanning::start();
    let client = &mut setup.client;
    let clean = &corpus::clean_messages()[3].1;
    let status = append(client, "a", clean, false);
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
    let status = append(client, "b", infected, false);
    assert!(status.starts_with("b NO [CANNOT]"), "{status}");
}
