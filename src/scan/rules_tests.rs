//! Tests of rule loading and matching on decoded MIME, and of strip/tag rewriting.

use std::path::Path;

use super::*;
use crate::scan::mime;

const RULES: &str = r#"
[[rule]]
name = "exe"
target = "filename"
pattern = '(?i)\.(exe|js|scr)$'
action = "strip"

[[rule]]
name = "double-ext"
target = "filename"
pattern = '(?i)\.(pdf|docx?)\.(exe|js|scr)$'
action = "block"

[[rule]]
name = "subject-wire"
target = "header"
header = "Subject"
pattern = '(?i)urgent wire'
action = "tag"

[[rule]]
name = "phish"
target = "body"
pattern = 'verify your password'
action = "log"

[[rule]]
name = "zip-type"
target = "content_type"
pattern = '^application/zip$'
action = "log"
"#;

fn rules() -> RuleSet {
    RuleSet::from_toml(RULES, Path::new("test.toml")).unwrap()
}

fn message(subject: &str, attachment_headers: &str) -> String {
    format!(
        "From: a@example.org\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Please verify your pass=\r\nword now.\r\n--XX\r\n{attachment_headers}\r\n\r\nQUJDREVG\r\n--XX--\r\nepilogue\r\n"
    )
}

fn hits(raw: &str) -> Vec<(String, RuleAction)> {
    let parsed = mime::parse(raw.as_bytes()).unwrap();
    rules()
        .evaluate(&mime::view(&parsed))
        .into_iter()
        .map(|h| (h.name, h.action))
        .collect()
}

#[test]
fn rfc2231_filename_and_double_extension() {
    let raw = message(
        "hello",
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename*=utf-8''inv%C3%B6ice.pdf.exe",
    );
    let found = hits(&raw);
    assert!(found.contains(&("exe".into(), RuleAction::Strip)));
    assert!(found.contains(&("double-ext".into(), RuleAction::Block)));
    assert!(
        found.contains(&("phish".into(), RuleAction::Log)),
        "QP body decoded: {found:?}"
    );
}

#[test]
fn rfc2047_content_type_name() {
    // "script.js" as an RFC 2047 encoded word in Content-Type name=
    let raw = message(
        "hello",
        "Content-Type: application/octet-stream; name=\"=?utf-8?B?c2NyaXB0Lmpz?=\"\r\n\
         Content-Transfer-Encoding: base64",
    );
    let found = hits(&raw);
    assert_eq!(found.iter().filter(|h| h.0 == "exe").count(), 1);
    assert!(!found.iter().any(|h| h.0 == "double-ext"));
}

#[test]
fn header_and_content_type_rules() {
    let raw = message(
        "=?utf-8?q?URGENT_wire?= transfer",
        "Content-Type: application/zip; name=\"a.zip\"\r\nContent-Transfer-Encoding: base64",
    );
    let found = hits(&raw);
    assert!(found.contains(&("subject-wire".into(), RuleAction::Tag)));
    assert!(found.contains(&("zip-type".into(), RuleAction::Log)));
    assert!(!found.iter().any(|h| h.0 == "exe"));
}

#[test]
fn default_rules_load_and_match() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let set = RuleSet::load_dir(&dir).unwrap();
    assert!(set.len() >= 4);
    for (name, expected) in [
        ("invoice.pdf.exe", Some(RuleAction::Block)),
        ("setup.msi", Some(RuleAction::Strip)),
        ("photo.iso", Some(RuleAction::Strip)),
        ("report.xlsm", Some(RuleAction::Tag)),
        ("report.pdf", None),
    ] {
        let raw = message("x", &format!("Content-Type: application/octet-stream; name=\"{name}\"\r\nContent-Transfer-Encoding: base64"));
        let parsed = mime::parse(raw.as_bytes()).unwrap();
        let best = set
            .evaluate(&mime::view(&parsed))
            .into_iter()
            .map(|h| h.action)
            .max();
        assert_eq!(best, expected, "{name}");
    }
}

#[test]
fn bad_rules_name_file_and_rule() {
    let bad_regex = "[[rule]]\nname = \"broken\"\ntarget = \"body\"\npattern = '(unclosed'\naction = \"block\"\n";
    let err = RuleSet::from_toml(bad_regex, Path::new("local.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("local.toml: rule 'broken': bad pattern"),
        "{err}"
    );
    let no_header =
        "[[rule]]\nname = \"h\"\ntarget = \"header\"\npattern = 'x'\naction = \"tag\"\n";
    let err = RuleSet::from_toml(no_header, Path::new("l.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rule 'h'") && err.contains("needs `header`"),
        "{err}"
    );
    let unknown =
        "[[rule]]\nname = \"u\"\ntarget = \"body\"\npattern = 'x'\naction = \"explode\"\n";
    let err = RuleSet::from_toml(unknown, Path::new("u.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("u.toml: "), "{err}");
    let huge = "[[rule]]\nname = \"big\"\ntarget = \"body\"\npattern = '\\w{1000}\\w{1000}\\w{1000}'\naction = \"log\"\n";
    let err = RuleSet::from_toml(huge, Path::new("b.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rule 'big'"), "{err}");
    let dup = format!(
        "{no_header_ok}{no_header_ok}",
        no_header_ok =
            "[[rule]]\nname = \"d\"\ntarget = \"body\"\npattern = 'x'\naction = \"log\"\n"
    );
    assert!(RuleSet::from_toml(&dup, Path::new("d.toml"))
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
}

#[test]
fn strip_keeps_everything_else_byte_identical() {
    let raw = message(
        "hello",
        "Content-Type: application/octet-stream; name=\"run.exe\"\r\nContent-Transfer-Encoding: base64",
    );
    let parsed = mime::parse(raw.as_bytes()).unwrap();
    let view = mime::view(&parsed);
    let hit = rules()
        .evaluate(&view)
        .into_iter()
        .find(|h| h.name == "exe")
        .unwrap();
    let index = hit.part.unwrap();
    let (start, end) = view.parts[index].span.unwrap();
    let out = mime::strip(raw.as_bytes(), &view, &[(index, "exe".into())]).unwrap();
    assert_eq!(&out[..start], &raw.as_bytes()[..start]);
    let tail = &raw.as_bytes()[end..];
    assert!(out.ends_with(tail));
    assert!(tail.starts_with(b"\r\n--XX--"));
    let middle = String::from_utf8(out[start..out.len() - tail.len()].to_vec()).unwrap();
    assert!(middle.starts_with("Content-Type: text/plain; charset=utf-8\r\n"));
    assert!(middle.contains("The attachment \"run.exe\" was removed by portcullis (rule exe)."));
    assert!(!String::from_utf8_lossy(&out).contains("QUJDREVG"));
    let reparsed = mime::parse(&out).unwrap();
    assert_eq!(reparsed.parts.len(), parsed.parts.len());
    assert_eq!(
        reparsed.body_text(0).unwrap(),
        "Please verify your password now."
    );
}

#[test]
fn strip_in_nested_message_and_root_refused() {
    let raw = "Subject: outer\r\nContent-Type: multipart/mixed; boundary=O\r\n\r\n--O\r\n\
               Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=I\r\n\r\n\
               --I\r\nContent-Type: text/plain\r\n\r\nhi\r\n--I\r\nContent-Type: application/x-bin; name=\"a.scr\"\r\n\r\nXYZ\r\n--I--\r\n\r\n--O--\r\n";
    let parsed = mime::parse(raw.as_bytes()).unwrap();
    let view = mime::view(&parsed);
    let hit = rules()
        .evaluate(&view)
        .into_iter()
        .find(|h| h.name == "exe")
        .unwrap();
    let out = mime::strip(raw.as_bytes(), &view, &[(hit.part.unwrap(), "exe".into())]).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("XYZ") && text.contains("\"a.scr\" was removed"));
    assert!(text.starts_with("Subject: outer\r\n") && text.ends_with("\r\n--I--\r\n\r\n--O--\r\n"));
    // the root part can never be stripped
    assert!(mime::strip(raw.as_bytes(), &view, &[(0, "exe".into())]).is_none());
}

#[test]
fn tag_prefixes_subject_and_adds_header() {
    let raw = "From: a@b\r\nSubject: Urgent wire\r\n transfer\r\n\r\nbody\r\n";
    let parsed = mime::parse(raw.as_bytes()).unwrap();
    let out = String::from_utf8(mime::tag(&parsed, "subject-wire")).unwrap();
    assert_eq!(
        out,
        "X-Portcullis-Rule: subject-wire\r\nFrom: a@b\r\nSubject: [portcullis: subject-wire] Urgent wire\r\n transfer\r\n\r\nbody\r\n"
    );
    let lf = "From: a@b\n\nbody\n";
    let out = String::from_utf8(mime::tag(&mime::parse(lf.as_bytes()).unwrap(), "r")).unwrap();
    assert_eq!(
        out,
        "X-Portcullis-Rule: r\nSubject: [portcullis: r]\nFrom: a@b\n\nbody\n"
    );
}
