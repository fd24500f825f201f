//! Dash-escaping of the text of a cleartext signed message (RFC 9580 7.1),
//! streamed: a line that starts with '-' MUST be escaped ("- -"), and one
//! that starts with "From " SHOULD be, as gpg does by default
//! (--escape-from-lines): mail systems turn such lines into ">From ", which
//! breaks the signature, and no verifier reads the escape into the text.
//! Only the output changes; the signature covers the unescaped text.

const FROM: &[u8] = b"From ";

pub struct DashEscaper {
    at_line_start: bool,
    /// How many bytes of "From " at a line's start are held back, not yet
    /// written: whether the line needs its escape is known only after them.
    pending: usize,
    last: Option<u8>,
}

impl Default for DashEscaper {
    fn default() -> Self {
        DashEscaper { at_line_start: true, pending: 0, last: None }
    }
}

impl DashEscaper {
    /// Escapes the next piece of text, writing through `out`.
    pub fn push<E>(&mut self, data: &[u8], out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut start = 0;
        for (i, &b) in data.iter().enumerate() {
            if self.pending > 0 {
                if b == FROM[self.pending] {
                    self.pending += 1;
                    if self.pending == FROM.len() {
                        out(b"- From ")?;
                        self.pending = 0;
                    }
                    start = i + 1;
                    continue;
                }
                // Not "From ": the held bytes go out as they came.
                out(&FROM[..self.pending])?;
                self.pending = 0;
                start = i;
            } else if self.at_line_start && b == b'-' {
                out(&data[start..i])?;
                out(b"- ")?;
                start = i;
            } else if self.at_line_start && b == FROM[0] {
                out(&data[start..i])?;
                self.pending = 1;
                self.at_line_start = false;
                start = i + 1;
                continue;
            }
            self.at_line_start = b == b'\n';
        }
        if let Some(&l) = data.last() {
            self.last = Some(l);
        }
        if start < data.len() {
            out(&data[start..])?;
        }
        Ok(())
    }

    /// Writes what is still held back (a text ending in a prefix of "From ").
    pub fn finish<E>(&mut self, out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.pending > 0 {
            out(&FROM[..self.pending])?;
            self.pending = 0;
        }
        Ok(())
    }

    /// The text's last byte so far.
    pub fn last(&self) -> Option<u8> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape_in_pieces(text: &[u8], piece: usize) -> Vec<u8> {
        let mut e = DashEscaper::default();
        let mut out = Vec::new();
        let mut w = |b: &[u8]| -> Result<(), ()> {
            out.extend_from_slice(b);
            Ok(())
        };
        for chunk in text.chunks(piece.max(1)) {
            e.push(chunk, &mut w).unwrap();
        }
        e.finish(&mut w).unwrap();
        out
    }

    #[test]
    fn dashes_and_from_lines_are_escaped_across_any_split() {
        let text: &[u8] = b"From me\n-x\nFrom\nFrog\nFro\n From x\nx From y\n\nFrom \n--\r\nFrom z\nFr";
        let want: &[u8] = b"- From me\n- -x\nFrom\nFrog\nFro\n From x\nx From y\n\n- From \n- --\r\n- From z\nFr";
        for piece in 1..=text.len() {
            assert_eq!(escape_in_pieces(text, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn text_without_escapes_is_unchanged() {
        for text in [&b""[..], b"a", b"F", b"From", b"plain\ntext\n", b"\n\n"] {
            for piece in 1..=text.len().max(1) {
                assert_eq!(escape_in_pieces(text, piece), text, "{:?} in pieces of {piece}", text);
            }
        }
    }
}
