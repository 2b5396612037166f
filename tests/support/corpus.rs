//! Deterministic test messages: a clean corpus that clamd must pass and an infected corpus that
//! it must flag (EICAR in many MIME placements, and every `clamav-testfiles` sample).
//!
//! Every message uses CRLF line endings and carries Date, From, To, Subject and Message-ID.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::clamd::TESTFILES_DIR;
use super::mime::{message, message_from, pseudo_random, zip_stored, Part};

/// The 68-byte EICAR anti-virus test string.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A named test message.
pub type NamedMessage = (String, Vec<u8>);

/// Messages clamd (with the harness signatures) must answer `OK` for: plain, dot lines,
/// alternative, mixed with PDF, nested, forwarded, 8-bit UTF-8, RFC 2047 headers, ~1 MB, ~10 MB
/// (in this order; built once per test binary).
pub fn clean_messages() -> Vec<NamedMessage> {
    static CACHE: OnceLock<Vec<NamedMessage>> = OnceLock::new();
    CACHE.get_or_init(build_clean).clone()
}

/// The first clean messages only (small ones: plain, dot lines, alternative, ...), `count` ≤ 8.
pub fn small_clean_messages(count: usize) -> Vec<Vec<u8>> {
    clean_messages()
        .into_iter()
        .take(count.min(8))
        .map(|(_, bytes)| bytes)
        .collect()
}

fn build_clean() -> Vec<NamedMessage> {
    vec![
        named("clean-plain", plain_text()),
        named("clean-dot-lines", dot_lines()),
        named("clean-alternative", alternative()),
        named("clean-mixed-pdf", mixed_with_pdf()),
        named("clean-nested-multipart", nested_multipart()),
        named("clean-forwarded-rfc822", forwarded(plain_text())),
        named("clean-utf8-8bit", utf8_body()),
        named("clean-rfc2047-headers", encoded_headers()),
        named("clean-1mb-attachment", with_bulk("clean-1mb", 768 * 1024)),
        named(
            "clean-10mb-attachment",
            with_bulk("clean-10mb", 7_680 * 1024),
        ),
    ]
}

/// Messages clamd (with the harness signatures) must answer `... FOUND` for: EICAR in a
/// plain body, a base64 attachment, a nested multipart, a zip, a forwarded message, after a
/// 2 MB clean attachment; then [`testfile_messages`] (built once per test binary).
pub fn infected_messages() -> Vec<NamedMessage> {
    static CACHE: OnceLock<Vec<NamedMessage>> = OnceLock::new();
    CACHE.get_or_init(build_infected).clone()
}

fn build_infected() -> Vec<NamedMessage> {
    let mut list = vec![
        named("infected-eicar-plain-body", eicar_plain_body()),
        named("infected-eicar-attachment", eicar_attachment()),
        named("infected-eicar-nested", eicar_nested()),
        named("infected-eicar-zip", eicar_zip()),
        named("infected-eicar-forwarded", forwarded(eicar_attachment())),
        named("infected-eicar-after-2mb", eicar_after_bulk()),
    ];
    list.extend(testfile_messages());
    list
}

/// The one `clamav-testfiles` sample left out of [`testfile_messages`]: tar.gz inside tar.gz.
/// Attached to a message it nests deeper than clamd's default `MaxRecursion 17`, so clamd answers
/// `OK` with default limits; with `AlertExceedsMax yes` it answers
/// `Heuristics.Limits.Exceeded.MaxRecursion FOUND`, with `MaxRecursion 40` the real detection.
pub const RECURSION_LIMIT_SAMPLE: &str = "clam_cache_emax.tgz";

/// One message per file of the `clamav-testfiles` package (except [`RECURSION_LIMIT_SAMPLE`]),
/// attached as base64; all are detected through the harness's `.hdb` signature of `clam.exe`
/// with clamd's default limits.
pub fn testfile_messages() -> Vec<NamedMessage> {
    sample_paths()
        .iter()
        .filter(|path| !path.ends_with(RECURSION_LIMIT_SAMPLE))
        .map(|path| sample_message(path))
        .collect()
}

/// The message carrying [`RECURSION_LIMIT_SAMPLE`] (see there for the expected verdicts).
pub fn recursion_limit_message() -> NamedMessage {
    sample_message(&PathBuf::from(TESTFILES_DIR).join(RECURSION_LIMIT_SAMPLE))
}

fn sample_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(TESTFILES_DIR)
        .unwrap_or_else(|e| panic!("{TESTFILES_DIR}: {e} (install clamav-testfiles)"))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
}

fn sample_message(path: &Path) -> NamedMessage {
    let file = path.file_name().expect("file name").to_string_lossy();
    let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let id = format!("testfile-{file}");
    let root = Part::multipart(
        "mixed",
        "tf-boundary-1",
        vec![
            Part::text("The sample you asked for is attached.\n"),
            Part::attachment(&file, "application/octet-stream", &data),
        ],
    );
    (
        format!("infected-{id}"),
        message(&id, &format!("Sample {file}"), root),
    )
}

fn named(name: &str, bytes: Vec<u8>) -> NamedMessage {
    (name.to_string(), bytes)
}

fn plain_text() -> Vec<u8> {
    let body = "Hello Alice,\n\nthe quarterly figures are ready.\n\nRegards,\nSender\n";
    message("plain", "Quarterly figures", Part::text(body))
}

fn dot_lines() -> Vec<u8> {
    let body = "First line\n.\n..\n.leading dot\n...three\nmiddle\n.\nlast line\n";
    message("dots", "Lines starting with dots", Part::text(body))
}

fn alternative_part(boundary: &str) -> Part {
    Part::multipart(
        "alternative",
        boundary,
        vec![
            Part::text("Meeting moved to 3 pm.\n"),
            Part::html("<html><body><p>Meeting moved to <b>3 pm</b>.</p></body></html>\n"),
        ],
    )
}

fn alternative() -> Vec<u8> {
    message("alt", "Meeting update", alternative_part("alt-boundary-1"))
}

fn pdf_like_bytes() -> Vec<u8> {
    let mut pdf =
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
            .to_vec();
    pdf.extend_from_slice(b"3 0 obj\n<< /Length 4096 >>\nstream\n");
    pdf.extend(pseudo_random(7, 4096));
    pdf.extend_from_slice(b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    pdf
}

fn mixed_with_pdf() -> Vec<u8> {
    let root = Part::multipart(
        "mixed",
        "mixed-boundary-1",
        vec![
            Part::text("Please find the report attached.\n"),
            Part::attachment("report.pdf", "application/pdf", &pdf_like_bytes()),
        ],
    );
    message("pdf", "Report", root)
}

fn nested_multipart() -> Vec<u8> {
    let related = Part::multipart(
        "related",
        "rel-boundary-3",
        vec![
            Part::html("<html><body><img src=\"cid:logo\"></body></html>\n"),
            Part::attachment("logo.png", "image/png", &pseudo_random(11, 2048)),
        ],
    );
    let alternative = Part::multipart(
        "alternative",
        "alt-boundary-2",
        vec![Part::text("See the logo.\n"), related],
    );
    let root = Part::multipart(
        "mixed",
        "mixed-boundary-2",
        vec![
            alternative,
            Part::attachment(
                "data.bin",
                "application/octet-stream",
                &pseudo_random(13, 3000),
            ),
        ],
    );
    message("nested", "Nested parts", root)
}

fn forwarded(inner: Vec<u8>) -> Vec<u8> {
    let root = Part::multipart(
        "mixed",
        "fwd-boundary-1",
        vec![
            Part::text("Forwarding the message below.\n"),
            Part::rfc822(&inner),
        ],
    );
    message("fwd", "Fwd: forwarded message", root)
}

fn utf8_body() -> Vec<u8> {
    let body = "Grüße aus Köln! Ça va? Привет, 你好, こんにちは 👋\nZweite Zeile: äöüß ÄÖÜ\n";
    message("utf8", "8-bit body", Part::text(body))
}

fn encoded_headers() -> Vec<u8> {
    message_from(
        "rfc2047",
        "=?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.org>",
        "=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?= =?UTF-8?Q?_=E2=80=93_Teil_2?=",
        Part::text("Headers are RFC 2047 encoded.\n"),
    )
}

fn with_bulk(id: &str, raw_len: usize) -> Vec<u8> {
    let root = Part::multipart(
        "mixed",
        "bulk-boundary-1",
        vec![
            Part::text("A large archive is attached.\n"),
            Part::attachment("archive.bin", "application/octet-stream", &bulk(raw_len)),
        ],
    );
    message(id, "Large attachment", root)
}

fn bulk(len: usize) -> Vec<u8> {
    pseudo_random(len as u64, len)
}

fn eicar_plain_body() -> Vec<u8> {
    let body = format!(
        "The test string follows.\n{}\n",
        std::str::from_utf8(EICAR).expect("EICAR is ASCII")
    );
    message("eicar-body", "EICAR in the body", Part::text(&body))
}

fn eicar_attachment() -> Vec<u8> {
    let root = Part::multipart(
        "mixed",
        "eicar-boundary-1",
        vec![
            Part::text("Invoice attached.\n"),
            Part::attachment("invoice.com", "application/octet-stream", EICAR),
        ],
    );
    message("eicar-att", "Invoice", root)
}

fn eicar_nested() -> Vec<u8> {
    let inner = Part::multipart(
        "mixed",
        "eicar-inner-2",
        vec![
            Part::text("Inner part.\n"),
            Part::attachment("tool.exe", "application/octet-stream", EICAR),
        ],
    );
    let root = Part::multipart(
        "mixed",
        "eicar-outer-1",
        vec![alternative_part("eicar-alt-3"), inner],
    );
    message("eicar-nested", "Nested attachment", root)
}

fn eicar_zip() -> Vec<u8> {
    let zip = zip_stored(&[("readme.txt", b"nothing here\n"), ("eicar.com", EICAR)]);
    let root = Part::multipart(
        "mixed",
        "eicar-zip-1",
        vec![
            Part::text("Archive attached.\n"),
            Part::attachment("files.zip", "application/zip", &zip),
        ],
    );
    message("eicar-zip", "Zipped files", root)
}

fn eicar_after_bulk() -> Vec<u8> {
    let root = Part::multipart(
        "mixed",
        "eicar-bulk-1",
        vec![
            Part::text("Two attachments.\n"),
            Part::attachment(
                "big.bin",
                "application/octet-stream",
                &bulk(2 * 1024 * 1024),
            ),
            Part::attachment("small.com", "application/octet-stream", EICAR),
        ],
    );
    message("eicar-bulk", "Big then bad", root)
}
