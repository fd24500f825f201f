//! One signing call over the daemon's socket, speaking the qrexec socket-service
//! protocol exactly as `qrexec` and `qvault-gpg` do: the descriptor
//! `qvault.Gpg <source>\0`, a `Request`, then (after `Ready`) `Data` chunks and
//! `End`, and a `Signed` answer.

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context as _};
use qubes_rpc::frame::encode_into;
use qubes_rpc::transport::SERVICE_GPG;
use qubes_rpc::{
    ClientFrame, FrameReader, HashAlgo, Op, Request, ServerFrame, SignMode, SignRequest, SignResult, CHUNK_SIZE,
};

/// A detached, binary signing request for the vault's default key or `key`.
pub fn detached_request(key: Option<String>, digest: Option<HashAlgo>, known_log_size: Option<u64>) -> SignRequest {
    SignRequest { key, mode: SignMode::Detached, armor: false, digest, text: false, known_log_size, client_hash: false }
}

/// What one call returned, checked: a `Signed` frame with a signature and a receipt.
#[derive(Debug)]
pub struct Signed {
    pub result: SignResult,
    /// The log index the receipt names.
    pub index: Option<u64>,
}

/// Reusable per-worker buffers, so the load generator itself allocates little.
#[derive(Default)]
pub struct Scratch {
    out: Vec<u8>,
}

/// Makes one signing call. `data` is sent in chunks of at most [`CHUNK_SIZE`].
pub fn sign_once(
    socket: &Path,
    source: &str,
    req: &SignRequest,
    data: &[u8],
    scratch: &mut Scratch,
) -> anyhow::Result<Signed> {
    let stream = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    let out = &mut scratch.out;
    out.clear();
    // The descriptor and the request leave in one write, as qrexec's would.
    out.extend_from_slice(format!("{SERVICE_GPG} {source}").as_bytes());
    out.push(0);
    encode_into(&ClientFrame::Request(Request::new(Op::Sign(req.clone()))), out)?;
    (&stream).write_all(out)?;
    let mut reader = FrameReader::new(&stream);
    match reader.next::<ServerFrame<'_>>()? {
        Some(ServerFrame::Ready(_)) => {}
        Some(ServerFrame::Error(e)) => bail!("vault refused: {:?}: {}", e.code, e.message),
        Some(_) => bail!("expected Ready"),
        None => bail!("connection closed before Ready"),
    }
    out.clear();
    for chunk in data.chunks(CHUNK_SIZE) {
        encode_into(&ClientFrame::Data(chunk), out)?;
        if out.len() >= CHUNK_SIZE {
            (&stream).write_all(out)?;
            out.clear();
        }
    }
    encode_into(&ClientFrame::End, out)?;
    (&stream).write_all(out)?;
    let result = match reader.next::<ServerFrame<'_>>()? {
        Some(ServerFrame::Signed(r)) => r,
        Some(ServerFrame::Error(e)) => bail!("vault refused: {:?}: {}", e.code, e.message),
        Some(_) => bail!("expected Signed"),
        None => bail!("connection closed before Signed"),
    };
    if result.signature.is_empty() {
        bail!("Signed frame without a signature");
    }
    if result.receipt.is_empty() {
        bail!("Signed frame without a receipt");
    }
    let index = qvault_attest::Receipt::parse(&result.receipt).ok().map(|r| r.index);
    Ok(Signed { result, index })
}
