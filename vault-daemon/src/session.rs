//! One qrexec call: read a request, answer it. Synchronous and transport-agnostic
//! (stdin/stdout in exec-service mode, a Unix socket under `serve`).
//!
//! Two layers of failure: a transport error (the peer vanished, a frame could not
//! be read) ends the call; a protocol error (bad request, unknown key) is answered
//! with an `Error` frame and then the call ends.

use std::io::{Read, Write};
use std::time::SystemTime;

use openpgp::serialize::Marshal as _;
use qubes_rpc::frame::FrameError;
use qubes_rpc::{
    ClientFrame, ErrorCode, FrameReader, FrameWriter, KeyInfo, Op, QubeName, Request, RpcError,
    ServerFrame, SignRequest, SignResult, CHUNK_SIZE,
};
use sequoia_openpgp as openpgp;

use crate::keystore::{self, Keystore};
use crate::sign::SignJob;

/// What a call may do, from the qrexec service it came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `qvault.Gpg`: list, export public, sign.
    Gpg,
    /// `qvault.LogRead`: read-only access to the log.
    LogRead,
}

/// Everything a call needs, shared read-only between calls.
pub struct Vault {
    pub keystore: Keystore,
}

/// A refusal to answer with an `Error` frame.
struct Refusal(ErrorCode, String);

impl Refusal {
    fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Refusal(code, msg.into())
    }
}

enum Failure {
    Transport(FrameError),
    Refused(Refusal),
}

impl From<FrameError> for Failure {
    fn from(e: FrameError) -> Self {
        Failure::Transport(e)
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

/// Serves one call. Returns the transport error, if any, for the caller to log.
pub fn serve_call<R: Read, W: Write>(
    vault: &Vault,
    service: Service,
    source: &QubeName,
    r: R,
    w: W,
) -> Result<(), FrameError> {
    let mut reader = FrameReader::new(r);
    let mut writer = FrameWriter::new(w);
    let result = match read_request(&mut reader) {
        Ok(None) => return Ok(()),
        Ok(Some(req)) => dispatch(vault, service, source, req, &mut reader, &mut writer),
        Err(f) => Err(f),
    };
    match result {
        Ok(()) => writer.flush().map_err(FrameError::from),
        Err(Failure::Refused(Refusal(code, message))) => {
            tracing::info!(source = %source, ?code, %message, "request refused");
            writer.send(&ServerFrame::Error(RpcError { code, message }))?;
            writer.flush()?;
            Ok(())
        }
        Err(Failure::Transport(e)) => {
            // A malformed frame still gets an answer if the peer is listening.
            if !e.is_disconnect() && !matches!(e, FrameError::Io(_)) {
                let _ = writer.send(&ServerFrame::Error(RpcError {
                    code: ErrorCode::BadRequest,
                    message: e.to_string(),
                }));
                let _ = writer.flush();
            }
            Err(e)
        }
    }
}

fn read_request<R: Read>(reader: &mut FrameReader<R>) -> Result<Option<Request>, Failure> {
    match reader.next::<ClientFrame<'_>>()? {
        None => Ok(None),
        Some(ClientFrame::Request(req)) => {
            req.validate().map_err(|e| {
                let code = match e {
                    qubes_rpc::messages::RequestError::Version(_) => ErrorCode::UnsupportedVersion,
                    _ => ErrorCode::BadRequest,
                };
                Refusal::new(code, e.to_string())
            })?;
            Ok(Some(req))
        }
        Some(_) => {
            Err(Refusal::new(ErrorCode::BadRequest, "expected a request frame first").into())
        }
    }
}

fn dispatch<R: Read, W: Write>(
    vault: &Vault,
    service: Service,
    source: &QubeName,
    req: Request,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Failure> {
    match (service, req.op) {
        (Service::Gpg, Op::ListKeys { secret, selectors }) => {
            let keys: Vec<KeyInfo> = vault
                .keystore
                .find(&selectors)
                .into_iter()
                .filter(|k| !secret || k.cert.is_tsk())
                .filter_map(|k| keystore::key_info(&k.cert))
                .collect();
            writer.send(&ServerFrame::Keys(keys))?;
            Ok(())
        }
        (Service::Gpg, Op::ExportPublic { selectors }) => {
            let mut out = Vec::new();
            for k in vault.keystore.find(&selectors) {
                keystore::export_public(&k.cert, &mut out).map_err(|e| {
                    Refusal::new(
                        ErrorCode::Internal,
                        format!("cannot serialize certificate: {e}"),
                    )
                })?;
            }
            for chunk in out.chunks(CHUNK_SIZE) {
                writer.send(&ServerFrame::Output(chunk))?;
            }
            writer.send(&ServerFrame::Exported)?;
            Ok(())
        }
        (Service::Gpg, Op::Sign(sreq)) => sign(vault, source, &sreq, reader, writer),
        (Service::LogRead, Op::Checkpoint { .. }) | (Service::Gpg, Op::Checkpoint { .. }) => {
            Err(Refusal::new(ErrorCode::Unavailable, "this vault keeps no log").into())
        }
        (Service::LogRead, _) => Err(Refusal::new(
            ErrorCode::Denied,
            "qvault.LogRead only reads the log; use qvault.Gpg to sign",
        )
        .into()),
    }
}

fn sign<R: Read, W: Write>(
    vault: &Vault,
    source: &QubeName,
    req: &SignRequest,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Failure> {
    let key = vault
        .keystore
        .signing_key(req.key.as_deref())
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    let mut job =
        SignJob::new(req).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
    let plan = job.plan(&key);
    writer.send(&ServerFrame::Ready(plan.clone()))?;
    writer.flush().map_err(FrameError::from)?;
    loop {
        match reader.next::<ClientFrame<'_>>()? {
            Some(ClientFrame::Data(d)) => {
                job.update(d)
                    .map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
            }
            Some(ClientFrame::End) => break,
            Some(ClientFrame::Request(_)) => {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "unexpected request frame in the data stream",
                )
                .into())
            }
            None => return Err(FrameError::Truncated.into()),
        }
    }
    let created = SystemTime::now();
    let finished = job
        .finish(&key, created, &[])
        .map_err(|e| Refusal::new(ErrorCode::Internal, format!("signing failed: {e}")))?;
    let mut signature = Vec::new();
    openpgp::Packet::from(finished.signature.clone())
        .serialize(&mut signature)
        .map_err(|e| {
            Refusal::new(
                ErrorCode::Internal,
                format!("cannot serialize signature: {e}"),
            )
        })?;
    tracing::info!(
        source = %source,
        key = %plan.signer_fpr,
        bytes = finished.data_len,
        "signature made"
    );
    let created = finished
        .signature
        .signature_creation_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    writer.send(&ServerFrame::Signed(SignResult {
        signature,
        sig_class: plan.sig_class,
        pk_algo: plan.pk_algo,
        hash_algo: plan.hash_algo,
        created,
        signer_fpr: plan.signer_fpr,
        primary_fpr: plan.primary_fpr,
        receipt: Vec::new(),
    }))?;
    Ok(())
}
