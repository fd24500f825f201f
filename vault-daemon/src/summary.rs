//! What was signed, in a line a person reads: for data the vault recognises
//! (Debian .changes and .dsc, apt Release files, git commit and tag objects,
//! rpm headers) a short summary that goes into the signature's log entry and
//! the vault's question.
//!
//! The data comes from the calling qube and is hostile. Only its first
//! [`PREFIX`] bytes are kept (the data itself streams through the hash, never
//! buffered); every field is cut to a bound and stripped of control
//! characters; the whole summary is at most [`MAX_SUMMARY`] bytes. A parse that
//! fails gives no summary, never a failed signature.

use qvault_attest::entry::MAX_SUMMARY;

/// How much of the data the summary reads: enough for the header fields of
/// every format here and the first files of a large upload.
pub const PREFIX: usize = 64 * 1024;
/// Longest single field value, in characters.
const MAX_FIELD: usize = 120;
/// Files named before "and N more".
const MAX_FILES: usize = 12;

/// Keeps the first [`PREFIX`] bytes of the data as it streams past.
#[derive(Debug, Default)]
pub struct Sniffer {
    head: Vec<u8>,
    total: u64,
}

impl Sniffer {
    pub fn new() -> Sniffer {
        Sniffer::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = PREFIX.saturating_sub(self.head.len());
        self.head.extend_from_slice(&data[..room.min(data.len())]);
    }

    /// The summary of what was seen, if the data is of a kind the vault knows.
    pub fn summary(&self) -> Option<String> {
        summarize(&self.head, self.total > self.head.len() as u64)
    }
}

/// Summarises `head`, the start of the data (`cut`: the data went on).
pub fn summarize(head: &[u8], cut: bool) -> Option<String> {
    let s = if head.starts_with(&[0x8e, 0xad, 0xe8, 0x01]) || looks_like_rpm_blob(head) {
        rpm(head)
    } else {
        let text = text_prefix(head, cut)?;
        git(&text).or_else(|| deb822(&text))
    }?;
    // What the log accepts (entry.rs checks it again): one line, bounded.
    Some(bound(&s)).filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
}

/// The data as text: valid UTF-8 up to where it was cut (a multi-byte
/// character may be split at the cut).
fn text_prefix(head: &[u8], cut: bool) -> Option<String> {
    match std::str::from_utf8(head) {
        Ok(s) => Some(s.to_owned()),
        Err(e) if cut && head.len() - e.valid_up_to() < 4 && e.error_len().is_none() => {
            Some(String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    }
}

/// A value fit for a summary: no control characters, at most [`MAX_FIELD`]
/// characters.
fn clean(v: &str) -> String {
    let v: String = v.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if v.chars().count() > MAX_FIELD {
        let mut s: String = v.chars().take(MAX_FIELD).collect();
        s.push('…');
        s
    } else {
        v
    }
}

/// The whole summary within [`MAX_SUMMARY`] bytes, cut at a character.
fn bound(s: &str) -> String {
    if s.len() <= MAX_SUMMARY {
        return s.to_owned();
    }
    let mut end = MAX_SUMMARY - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn is_hex_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A git commit or tag object as git hands it to gpg (headers, blank line,
/// message). The commit's own id is not known yet: it covers the signature.
fn git(text: &str) -> Option<String> {
    let (headers, message) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = headers.lines();
    let first = lines.next()?;
    let subject = clean(message.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    let field = |name: &str| -> Option<String> {
        headers.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' '))).map(clean)
    };
    if let Some(tree) = first.strip_prefix("tree ").filter(|t| is_hex_id(t)) {
        let parents: Vec<String> =
            headers.lines().filter_map(|l| l.strip_prefix("parent ")).filter(|p| is_hex_id(p)).map(clean).collect();
        let author = field("author").map(|a| person(&a))?;
        let mut s = format!("git commit: tree {tree}");
        match parents.len() {
            0 => s.push_str(", no parent"),
            1 => s.push_str(&format!(", parent {}", parents[0])),
            n => s.push_str(&format!(", {n} parents ({})", parents.join(" "))),
        }
        s.push_str(&format!(", author {author}, subject \"{subject}\""));
        return Some(s);
    }
    if let Some(object) = first.strip_prefix("object ").filter(|o| is_hex_id(o)) {
        let kind = field("type")?;
        let tag = field("tag")?;
        let tagger = field("tagger").map(|t| person(&t)).unwrap_or_else(|| "none".into());
        return Some(format!("git tag: {tag} on {kind} {object}, tagger {tagger}, subject \"{subject}\""));
    }
    None
}

/// `Name <email> 1700000000 +0100` without the time (the log has its own).
fn person(v: &str) -> String {
    match v.rfind('>') {
        Some(end) => v[..=end].to_owned(),
        None => v.to_owned(),
    }
}

/// The fields of the first deb822 paragraph: (name, value with continuation
/// lines joined by `\n`). Inside a clearsigned message, the signed text.
fn paragraph(text: &str) -> Vec<(String, String)> {
    let mut lines = text.lines().peekable();
    if lines.peek() == Some(&"-----BEGIN PGP SIGNED MESSAGE-----") {
        // Armor headers (Hash: ...) up to the blank line; then dash-escaped text.
        for l in lines.by_ref() {
            if l.trim().is_empty() {
                break;
            }
        }
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    for raw in lines {
        if raw.starts_with("-----BEGIN PGP SIGNATURE-----") {
            break;
        }
        let l = raw.strip_prefix("- ").unwrap_or(raw);
        if l.trim().is_empty() {
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if l.starts_with(' ') || l.starts_with('\t') {
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(l.trim());
            }
            continue;
        }
        let Some((name, value)) = l.split_once(':') else { return Vec::new() };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Vec::new();
        }
        fields.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    fields
}

/// Debian .changes, .dsc and apt Release files.
fn deb822(text: &str) -> Option<String> {
    let fields = paragraph(text);
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let one = |name: &str| get(name).map(|v| clean(v.lines().next().unwrap_or("")));
    let files = || {
        let list = get("files").or_else(|| get("checksums-sha256"))?;
        // `md5 size [section priority] name`: the name is the last word.
        let names: Vec<String> =
            list.lines().filter_map(|l| l.split_whitespace().last()).filter(|n| !n.is_empty()).map(clean).collect();
        let mut s = names.iter().take(MAX_FILES).cloned().collect::<Vec<_>>().join(", ");
        if names.len() > MAX_FILES {
            s.push_str(&format!(" and {} more", names.len() - MAX_FILES));
        }
        Some(s)
    };
    if let (Some(source), Some(version), Some(_)) = (one("source"), one("version"), get("format")) {
        let files = files().map(|f| format!(", files: {f}")).unwrap_or_default();
        if let Some(dist) = one("distribution") {
            let arch = one("architecture").map(|a| format!(" ({a})")).unwrap_or_default();
            return Some(format!("Debian upload (.changes): {source} {version}{arch} to {dist}{files}"));
        }
        return Some(format!("Debian source package (.dsc): {source} {version}{files}"));
    }
    if get("source").is_none() && (get("suite").is_some() || get("codename").is_some()) && get("date").is_some() {
        let mut parts = Vec::new();
        for (name, label) in [("origin", "origin"), ("suite", "suite"), ("codename", "codename"), ("date", "date")] {
            if let Some(v) = one(name) {
                parts.push(format!("{label} {v}"));
            }
        }
        return Some(format!("apt Release file: {}", parts.join(", ")));
    }
    None
}

/// An rpm header without its 8-byte magic: index count and data size, then
/// the index. Checked loosely here; `rpm` checks every bound.
fn looks_like_rpm_blob(head: &[u8]) -> bool {
    head.len() >= 24 && {
        let il = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        // The first index entry of a signed header is its immutable region.
        (1..=4096).contains(&il) && head[8..12] == [0, 0, 0, 63]
    }
}

/// An rpm header (as rpmsign hands it to gpg): name-version-release.arch.
fn rpm(head: &[u8]) -> Option<String> {
    let blob = if head.starts_with(&[0x8e, 0xad, 0xe8, 0x01]) { head.get(8..)? } else { head };
    let be = |at: usize| -> Option<u32> { blob.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) };
    let (il, dl) = (be(0)? as usize, be(4)? as usize);
    if il > 65536 || dl > 256 << 20 {
        return None;
    }
    let store = 8 + il * 16;
    let tag = |want: u32| -> Option<String> {
        for i in 0..il {
            let e = 8 + i * 16;
            if be(e)? != want {
                continue;
            }
            // RPM_STRING_TYPE 6 (or I18N 9, first string): NUL-terminated.
            if !matches!(be(e + 4)?, 6 | 9) {
                return None;
            }
            let off = be(e + 8)? as usize;
            if off >= dl {
                return None;
            }
            let start = store.checked_add(off)?;
            let rest = blob.get(start..)?;
            let end = rest.iter().take(MAX_FIELD * 4).position(|&b| b == 0)?;
            return std::str::from_utf8(&rest[..end]).ok().map(clean);
        }
        None
    };
    let (name, version, release) = (tag(1000)?, tag(1001)?, tag(1002)?);
    let arch = tag(1022).unwrap_or_else(|| "noarch".into());
    Some(format!("rpm package: {name}-{version}-{release}.{arch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    const PARENT: &str = "1111111111111111111111111111111111111111";

    #[test]
    fn a_git_commit() {
        let c = format!(
            "tree {TREE}\nparent {PARENT}\nauthor A U Thor <a@example.org> 1700000000 +0000\n\
committer A U Thor <a@example.org> 1700000000 +0000\n\nFix the frobnicator\n\nLonger text.\n"
        );
        assert_eq!(
            summarize(c.as_bytes(), false).unwrap(),
            format!("git commit: tree {TREE}, parent {PARENT}, author A U Thor <a@example.org>, subject \"Fix the frobnicator\"")
        );
    }

    #[test]
    fn a_git_tag() {
        let t = format!("object {PARENT}\ntype commit\ntag v1.0\ntagger T <t@example.org> 1 +0000\n\nRelease 1.0\n");
        assert_eq!(
            summarize(t.as_bytes(), false).unwrap(),
            format!("git tag: v1.0 on commit {PARENT}, tagger T <t@example.org>, subject \"Release 1.0\"")
        );
    }

    #[test]
    fn debian_changes_clearsigned_or_not() {
        let body = "Format: 1.8\nDate: Thu, 26 Nov 2026 12:00:00 +0000\nSource: hello\nArchitecture: source\n\
Version: 1.0\nDistribution: unstable\nChanges:\n hello (1.0) unstable; urgency=medium\nFiles:\n \
0123 100 misc optional hello_1.0.dsc\n 4567 200 misc optional hello_1.0.tar.xz\n";
        let want = "Debian upload (.changes): hello 1.0 (source) to unstable, files: hello_1.0.dsc, hello_1.0.tar.xz";
        assert_eq!(summarize(body.as_bytes(), false).unwrap(), want);
        let signed =
            format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{body}\n-----BEGIN PGP SIGNATURE-----\n");
        assert_eq!(summarize(signed.as_bytes(), false).unwrap(), want);
    }

    #[test]
    fn a_dsc_and_a_release_file() {
        let dsc = "Format: 3.0 (native)\nSource: hello\nBinary: hello\nVersion: 1.0\nFiles:\n ab 10 hello_1.0.tar.xz\n";
        assert_eq!(
            summarize(dsc.as_bytes(), false).unwrap(),
            "Debian source package (.dsc): hello 1.0, files: hello_1.0.tar.xz"
        );
        let rel =
            "Origin: Debian\nLabel: Debian\nSuite: unstable\nCodename: sid\nDate: Sat, 28 Nov 2026 08:00:00 UTC\n\
SHA256:\n 00 12 main/binary-amd64/Packages\n";
        assert_eq!(
            summarize(rel.as_bytes(), false).unwrap(),
            "apt Release file: origin Debian, suite unstable, codename sid, date Sat, 28 Nov 2026 08:00:00 UTC"
        );
    }

    fn rpm_header(magic: bool) -> Vec<u8> {
        let strings: [(u32, &[u8]); 4] =
            [(1000, b"hello\0"), (1001, b"2.1\0"), (1002, b"3.fc40\0"), (1022, b"x86_64\0")];
        let mut index = Vec::new();
        let mut store = Vec::new();
        index.extend_from_slice(&[0, 0, 0, 63, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 16]);
        for (tag, s) in strings {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&6u32.to_be_bytes());
            index.extend_from_slice(&(store.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            store.extend_from_slice(s);
        }
        let mut h = Vec::new();
        if magic {
            h.extend_from_slice(&[0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0]);
        }
        h.extend_from_slice(&5u32.to_be_bytes());
        h.extend_from_slice(&(store.len() as u32).to_be_bytes());
        h.extend_from_slice(&index);
        h.extend_from_slice(&store);
        h
    }

    #[test]
    fn an_rpm_header_with_or_without_magic() {
        for magic in [true, false] {
            assert_eq!(summarize(&rpm_header(magic), false).unwrap(), "rpm package: hello-2.1-3.fc40.x86_64");
        }
        // Offsets past the data store: no summary, no panic.
        let mut h = rpm_header(true);
        h[8 + 4..8 + 8].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(summarize(&h, false), None);
    }

    #[test]
    fn hostile_data_gives_bounded_text_or_nothing() {
        assert_eq!(summarize(b"just some text\n", false), None);
        assert_eq!(summarize(&[0xff, 0xfe, 0, 1, 2], false), None);
        assert_eq!(summarize(b"", false), None);
        let long = format!(
            "Format: 1.8\nSource: {}\x1b[31m\nVersion: 1\nDistribution: x\nFiles:\n{}",
            "a".repeat(5000),
            " 0 1 f\n".repeat(10_000)
        );
        let mut s = Sniffer::new();
        for chunk in long.as_bytes().chunks(1000) {
            s.update(chunk);
        }
        let got = s.summary().unwrap();
        assert!(got.len() <= MAX_SUMMARY && !got.chars().any(char::is_control), "{got}");
        assert!(got.contains("and ") && got.contains(" more"), "{got}");
        // Every prefix of every format: never a panic.
        for text in [long.as_bytes().to_vec(), rpm_header(true), rpm_header(false)] {
            for n in 0..text.len().min(2000) {
                let _ = summarize(&text[..n], true);
            }
        }
    }
}
