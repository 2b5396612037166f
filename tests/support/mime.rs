//! Minimal, deterministic builders for test messages (RFC 5322 / RFC 2045–2046), base64 and
//! stored (uncompressed) zip archives (PKWARE APPNOTE 4.3). CRLF line endings throughout.

/// Converts `\n` line endings of a text literal to CRLF (input must not contain `\r`).
pub fn crlf(text: &str) -> Vec<u8> {
    assert!(!text.contains('\r'), "crlf() input must use bare \\n");
    text.replace('\n', "\r\n").into_bytes()
}

/// Base64 (RFC 2045 §6.8) in lines of 76 characters, each ending in CRLF.
pub fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 8);
    for (index, chunk) in data.chunks(3).enumerate() {
        if index > 0 && index % 19 == 0 {
            out.extend_from_slice(b"\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), for bulky clean attachments.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One MIME entity: header lines (each CRLF-terminated) and a body.
#[derive(Debug, Clone)]
pub struct Part {
    /// Header lines, each ending in CRLF.
    pub headers: Vec<u8>,
    /// The encoded body.
    pub body: Vec<u8>,
}

impl Part {
    /// `text/plain; charset=utf-8`; 8bit if the text is not ASCII, else 7bit.
    pub fn text(text: &str) -> Part {
        Part::textual("text/plain", text)
    }

    /// `text/html; charset=utf-8`.
    pub fn html(html: &str) -> Part {
        Part::textual("text/html", html)
    }

    fn textual(mime_type: &str, text: &str) -> Part {
        let encoding = if text.is_ascii() { "7bit" } else { "8bit" };
        let headers = format!(
            "Content-Type: {mime_type}; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n"
        );
        Part {
            headers: headers.into_bytes(),
            body: crlf(text),
        }
    }

    /// A base64-encoded attachment.
    pub fn attachment(filename: &str, mime_type: &str, data: &[u8]) -> Part {
        let headers = format!(
            "Content-Type: {mime_type}; name=\"{filename}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"{filename}\"\r\n"
        );
        Part {
            headers: headers.into_bytes(),
            body: base64(data),
        }
    }

    /// A `message/rfc822` part carrying `message` (RFC 2046 §5.2.1), e.g. a forward.
    pub fn rfc822(message: &[u8]) -> Part {
        Part {
            headers: b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n".to_vec(),
            body: message.to_vec(),
        }
    }

    /// A `multipart/<subtype>` entity (RFC 2046 §5.1.1) with the given boundary.
    pub fn multipart(subtype: &str, boundary: &str, parts: Vec<Part>) -> Part {
        let mut body = b"This is a multi-part message in MIME format.\r\n".to_vec();
        for part in parts {
            body.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            body.extend_from_slice(&part.to_bytes());
        }
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let headers = format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n");
        Part {
            headers: headers.into_bytes(),
            body,
        }
    }

    /// Headers, the empty separator line, the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.headers.clone();
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A complete message: Date, From, To, Subject (raw header value, may be RFC 2047 encoded),
/// Message-ID `<id@corpus.portcullis.test>`, MIME-Version, then `root`'s headers and body.
pub fn message(id: &str, subject: &str, root: Part) -> Vec<u8> {
    message_from(id, "Sender <sender@example.org>", subject, root)
}

/// Like [`message`] with an explicit raw `From:` value.
pub fn message_from(id: &str, from: &str, subject: &str, root: Part) -> Vec<u8> {
    let mut out = format!(
        "Date: Tue, 14 Nov 2023 10:00:00 +0000\r\n\
         From: {from}\r\n\
         To: Alice <alice@example.net>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{id}@corpus.portcullis.test>\r\n\
         MIME-Version: 1.0\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&root.to_bytes());
    out
}

/// CRC-32 (IEEE 802.3, as used by zip).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A zip archive whose entries are stored without compression.
pub fn zip_stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let fields = ZipFields {
            crc: crc32(data),
            size: data.len() as u32,
            name,
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        fields.write_common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        fields.write_common(&mut central);
        central.extend_from_slice(&[0; 8]); // comment len, disk, internal attrs, external (lo)
        central.extend_from_slice(&[0; 2]); // external attrs (hi)
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

struct ZipFields<'a> {
    crc: u32,
    size: u32,
    name: &'a str,
}

impl ZipFields<'_> {
    /// version needed .. extra length: the run shared by local and central headers.
    fn write_common(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&10u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x0021u16.to_le_bytes()); // date 1980-01-01
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra length
    }
}
