//! `portcullis scan` (the binary) on a Maildir holding the test corpus, with a real clamd: one
//! correct line per message and the documented exit codes.

mod support;

use std::process::Command;

use support::clamd::Clamd;
use support::corpus;

fn write_maildir(dir: &std::path::Path, messages: &[(String, Vec<u8>)]) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("maildir");
    }
    for (name, bytes) in messages {
        std::fs::write(dir.join("cur").join(format!("{name}:2,")), bytes).expect("write");
    }
}

fn scan(config: &std::path::Path, path: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["scan", "--config"])
        .arg(config)
        .arg(path)
        .output()
        .expect("run portcullis scan");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn maildir_with_the_corpus_gets_one_line_per_message_and_the_right_exit_code() {
    let clamd = Clamd::start();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nname = \"i\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nbackend = \"b\"\n\n[[backend]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\ntls = \"none\"\n\n[scan]\nclamd = [{:?}]\nquarantine_dir = {:?}\n",
            clamd.tcp_addr(),
            dir.path().join("q").display().to_string()
        ),
    )
    .expect("config");
    let clean = corpus::clean_messages();
    let infected = corpus::infected_messages();
    let mixed = dir.path().join("mixed");
    write_maildir(&mixed, &[clean.clone(), infected.clone()].concat());
    let (code, out) = scan(&config, &mixed);
    assert_eq!(code, 1, "something found: exit 1\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), clean.len() + infected.len(), "{out}");
    for (name, _) in &clean {
        let line = lines
            .iter()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("no line for {name}"));
        assert!(line.contains("\tclean"), "{line}");
    }
    for (name, _) in &infected {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no line for {name}"));
        assert!(line.contains("\tinfected\t"), "{line}");
    }
    let only_clean = dir.path().join("clean");
    write_maildir(&only_clean, &clean);
    assert_eq!(scan(&config, &only_clean).0, 0, "all clean: exit 0");
    assert_eq!(
        scan(&config, &dir.path().join("missing")).0,
        2,
        "error: exit 2"
    );
}
