//! The byte streams OpenPGP signatures are computed over, built incrementally so
//! that data of any size is hashed in one pass with bounded memory.
//!
//! - `Binary` (class 0x00): the data as is.
//! - `Text` (class 0x01, `gpg -t`): line endings converted to CR LF (RFC 4880 5.2.1).
//! - `Cleartext` (class 0x01, `gpg --clearsign`): as GnuPG and RFC 4880 7.1 do, each
//!   line without its trailing spaces, tabs and CRs, lines joined by CR LF, and the
//!   line ending before the signature armor not hashed.

/// Longest run of trailing-whitespace candidates kept while clear-signing. A run
/// may turn out to be trailing (dropped) or not (hashed), so it is held until the
/// next other byte; the bound keeps memory fixed.
pub const MAX_WS_RUN: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    Binary,
    Text,
    Cleartext,
}

impl Canon {
    /// How a signing request's data is hashed: cleartext signatures drop
    /// trailing whitespace, text signatures use CR LF line ends, binary ones
    /// take the bytes as they are. The vault and a client hashing for it must
    /// agree, so both ask here.
    pub fn for_signing(mode: crate::SignMode, text: bool) -> Canon {
        match (mode, text) {
            (crate::SignMode::Cleartext, _) => Canon::Cleartext,
            (_, true) => Canon::Text,
            (_, false) => Canon::Binary,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a line has more than {MAX_WS_RUN} consecutive spaces, tabs or CRs; it cannot be clear-signed")]
pub struct WhitespaceRunTooLong;

/// Feeds canonicalized bytes to `sink`.
pub struct Canonicalizer {
    mode: Canon,
    /// Text: the previous byte was CR.
    prev_cr: bool,
    /// Cleartext: a line ending is pending (hashed only if another line follows).
    pending_eol: bool,
    /// Cleartext: whitespace that is trailing unless something else follows.
    ws: Vec<u8>,
}

impl Canonicalizer {
    pub fn new(mode: Canon) -> Self {
        Canonicalizer { mode, prev_cr: false, pending_eol: false, ws: Vec::new() }
    }

    pub fn update(&mut self, data: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), WhitespaceRunTooLong> {
        match self.mode {
            Canon::Binary => sink(data),
            Canon::Text => self.text(data, sink),
            Canon::Cleartext => self.cleartext(data, sink)?,
        }
        Ok(())
    }

    fn text(&mut self, data: &[u8], sink: &mut dyn FnMut(&[u8])) {
        let mut start = 0;
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' && !(if i == 0 { self.prev_cr } else { data[i - 1] == b'\r' }) {
                sink(&data[start..i]);
                sink(b"\r\n");
                start = i + 1;
            }
        }
        sink(&data[start..]);
        if let Some(&last) = data.last() {
            self.prev_cr = last == b'\r';
        }
    }

    fn cleartext(&mut self, data: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), WhitespaceRunTooLong> {
        // Runs of ordinary bytes are passed on as slices; only whitespace is buffered.
        let mut start = 0;
        for (i, &b) in data.iter().enumerate() {
            match b {
                b' ' | b'\t' | b'\r' => {
                    if start < i {
                        sink(&data[start..i]);
                    }
                    start = i + 1;
                    // The next line exists, even if it turns out to be blank.
                    if self.pending_eol {
                        sink(b"\r\n");
                        self.pending_eol = false;
                    }
                    if self.ws.len() >= MAX_WS_RUN {
                        return Err(WhitespaceRunTooLong);
                    }
                    self.ws.push(b);
                }
                b'\n' => {
                    if start < i {
                        sink(&data[start..i]);
                    }
                    start = i + 1;
                    self.ws.clear();
                    if self.pending_eol {
                        sink(b"\r\n");
                    }
                    self.pending_eol = true;
                }
                _ => {
                    if start == i {
                        // First ordinary byte of a run: flush what was held.
                        if self.pending_eol {
                            sink(b"\r\n");
                            self.pending_eol = false;
                        }
                        if !self.ws.is_empty() {
                            sink(&self.ws);
                            self.ws.clear();
                        }
                    }
                }
            }
        }
        if start < data.len() {
            sink(&data[start..]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(mode: Canon, chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = Canonicalizer::new(mode);
        let mut out = Vec::new();
        for ch in chunks {
            c.update(ch, &mut |b| out.extend_from_slice(b)).unwrap();
        }
        out
    }

    /// A direct, whole-input statement of the cleartext rule, to check the
    /// streaming version against.
    fn cleartext_reference(data: &[u8]) -> Vec<u8> {
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        if data.last() == Some(&b'\n') {
            lines.pop();
        }
        let stripped: Vec<Vec<u8>> = lines
            .iter()
            .map(|l| {
                let end = l.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r')).map_or(0, |p| p + 1);
                l[..end].to_vec()
            })
            .collect();
        stripped.join(&b"\r\n"[..])
    }

    #[test]
    fn text_converts_lone_lf_only() {
        assert_eq!(canon(Canon::Text, &[b"a\nb\r\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(canon(Canon::Text, &[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
        assert_eq!(canon(Canon::Text, &[b"a \n"]), b"a \r\n");
    }

    #[test]
    fn cleartext_strips_trailing_whitespace_and_last_eol() {
        assert_eq!(canon(Canon::Cleartext, &[b"a  \nb\t\n"]), b"a\r\nb");
        assert_eq!(canon(Canon::Cleartext, &[b"a\nb"]), b"a\r\nb");
        assert_eq!(canon(Canon::Cleartext, &[b"a\n\n"]), b"a\r\n");
        assert_eq!(canon(Canon::Cleartext, &[b"a b\r\n"]), b"a b");
        assert_eq!(canon(Canon::Cleartext, &[b""]), b"");
    }

    #[test]
    fn whitespace_run_is_bounded() {
        let mut c = Canonicalizer::new(Canon::Cleartext);
        let ws = vec![b' '; MAX_WS_RUN + 1];
        assert_eq!(c.update(&ws, &mut |_| {}), Err(WhitespaceRunTooLong));
    }

    proptest::proptest! {
        #[test]
        fn cleartext_streaming_matches_reference(
            data in proptest::collection::vec(proptest::sample::select(vec![b'a', b' ', b'\t', b'\r', b'\n', b'-']), 0..200),
            split in 0usize..200,
        ) {
            let split = split.min(data.len());
            let got = canon(Canon::Cleartext, &[&data[..split], &data[split..]]);
            proptest::prop_assert_eq!(got, cleartext_reference(&data));
        }

        #[test]
        fn text_streaming_is_split_invariant(
            data in proptest::collection::vec(proptest::sample::select(vec![b'a', b'\r', b'\n']), 0..200),
            split in 0usize..200,
        ) {
            let split = split.min(data.len());
            proptest::prop_assert_eq!(canon(Canon::Text, &[&data[..split], &data[split..]]), canon(Canon::Text, &[&data]));
        }
    }
}
