//! Length-prefixed framing: a 4-byte big-endian payload length, then a postcard
//! payload. The length is checked against [`MAX_FRAME`] before anything is
//! allocated, a payload must decode completely (no trailing bytes), and data never
//! travels in frames larger than [`CHUNK_SIZE`] plus a small header, so both ends
//! use bounded memory for any input size.

use std::io::{self, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

/// Largest accepted payload, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Size of the data chunks the two ends send.
pub const CHUNK_SIZE: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(u64),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("malformed frame: {0} trailing bytes after the message")]
    Trailing(usize),
}

impl FrameError {
    /// True when the peer went away (as opposed to sending something malformed).
    pub fn is_disconnect(&self) -> bool {
        match self {
            FrameError::Truncated => true,
            FrameError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// Decodes one complete payload; trailing bytes are an error.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes(payload)?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(value)
}

/// Encodes one frame (header and payload) onto the end of `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut buf = std::mem::take(out);
    buf = postcard::to_extend(value, buf)?;
    let len = buf.len() - start - 4;
    if len > MAX_FRAME {
        buf.truncate(start);
        *out = buf;
        return Err(FrameError::TooLarge(len as u64));
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    *out = buf;
    Ok(())
}

/// Reads frames from a byte stream.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader { inner: BufReader::with_capacity(64 * 1024, inner), buf: Vec::new() }
    }

    /// The next payload, or `None` on a clean end of stream before a frame began.
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_be_bytes(header) as u64;
        if len > MAX_FRAME as u64 {
            return Err(FrameError::TooLarge(len));
        }
        self.buf.resize(len as usize, 0);
        self.inner.read_exact(&mut self.buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                FrameError::Truncated
            } else {
                e.into()
            }
        })?;
        Ok(Some(&self.buf))
    }

    /// The next frame decoded as `T`, or `None` on a clean end of stream.
    pub fn next<'a, T: Deserialize<'a>>(&'a mut self) -> Result<Option<T>, FrameError> {
        match self.next_payload()? {
            None => Ok(None),
            Some(p) => decode(p).map(Some),
        }
    }

    /// The payload most recently returned by [`Self::next_payload`].
    pub fn payload(&self) -> &[u8] {
        &self.buf
    }

    pub fn get_mut(&mut self) -> &mut BufReader<R> {
        &mut self.inner
    }
}

/// Writes frames to a byte stream, one `write_all` per frame.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter { inner, buf: Vec::with_capacity(CHUNK_SIZE + 64) }
    }

    pub fn send<T: Serialize>(&mut self, value: &T) -> Result<(), FrameError> {
        self.buf.clear();
        encode_into(value, &mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;

    fn roundtrip(frame: &ClientFrame<'_>) {
        let mut out = Vec::new();
        encode_into(frame, &mut out).unwrap();
        let mut r = FrameReader::new(&out[..]);
        let back: ClientFrame<'_> = r.next().unwrap().unwrap();
        assert_eq!(&back, frame);
    }

    #[test]
    fn frames_roundtrip() {
        roundtrip(&ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors: vec!["a".into()] })));
        roundtrip(&ClientFrame::Data(b"hello"));
        roundtrip(&ClientFrame::End);
    }

    #[test]
    fn clean_eof_is_none_and_partial_header_is_truncated() {
        let mut r = FrameReader::new(&[][..]);
        assert!(r.next_payload().unwrap().is_none());
        let mut r = FrameReader::new(&[0u8, 0][..]);
        assert!(matches!(r.next_payload(), Err(FrameError::Truncated)));
        let mut r = FrameReader::new(&[0u8, 0, 0, 5, 1, 2][..]);
        assert!(matches!(r.next_payload(), Err(FrameError::Truncated)));
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let mut r = FrameReader::new(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(r.next_payload(), Err(FrameError::TooLarge(0xffff_ffff))));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut out = Vec::new();
        encode_into(&ClientFrame::End, &mut out).unwrap();
        out.push(0);
        let n = out.len() as u32 - 4;
        out[..4].copy_from_slice(&n.to_be_bytes());
        let mut r = FrameReader::new(&out[..]);
        assert!(matches!(r.next::<ClientFrame<'_>>(), Err(FrameError::Trailing(1))));
    }

    #[test]
    fn unknown_variant_is_a_decode_error() {
        let payload = [0x09u8];
        assert!(matches!(decode::<ClientFrame<'_>>(&payload), Err(FrameError::Decode(_))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode::<ClientFrame<'_>>(&bytes);
            let _ = decode::<ServerFrame<'_>>(&bytes);
            let mut r = FrameReader::new(&bytes[..]);
            while let Ok(Some(_)) = r.next::<ClientFrame<'_>>() {}
        }

        #[test]
        fn data_roundtrips(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            roundtrip(&ClientFrame::Data(&data));
        }
    }
}

/// The encodings shown in docs/protocol.md, pinned.
#[cfg(test)]
mod vectors {
    use super::*;
    use crate::messages::*;

    fn hex_of(f: &ClientFrame<'_>) -> String {
        let mut v = Vec::new();
        encode_into(f, &mut v).unwrap();
        v.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn documented_examples() {
        assert_eq!(
            hex_of(&ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors: vec![] }))),
            "000000050003000100"
        );
        assert_eq!(
            hex_of(&ClientFrame::Request(Request::new(Op::Sign(SignRequest {
                key: Some("alice".into()),
                mode: SignMode::Detached,
                armor: true,
                digest: Some(HashAlgo::Sha512),
                text: false,
                known_log_size: Some(300),
                client_hash: true,
            })))),
            "000000130003020105616c696365000101020001ac0201"
        );
        assert_eq!(
            hex_of(&ClientFrame::HashState(crate::HashState {
                algo: HashAlgo::Sha256,
                state: vec![0xab; 32],
                tail: b"xyz".to_vec(),
                len: 131,
            })),
            format!("00000029030020{}0378797a8301", "ab".repeat(32))
        );
        assert_eq!(hex_of(&ClientFrame::Data(b"hi")), "0000000401026869");
        assert_eq!(hex_of(&ClientFrame::End), "0000000102");
    }
}
