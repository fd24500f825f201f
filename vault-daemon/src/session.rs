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
    CheckpointReply, ClientFrame, ErrorCode, FrameReader, FrameWriter, KeyArgument, KeyInfo, Op, QubeName, Request,
    RpcError, ServerFrame, ServiceName, SignMode, SignRequest, SignResult, CHUNK_SIZE,
};
use sequoia_openpgp as openpgp;

use crate::confirm::{self, Answer, Question};
use crate::gate::{Confirmation, Gate};
use crate::keystore::{self, Keystore, StoredKey};
use crate::log::Log;
use crate::policy::{Confirm, KeyIdentity, Operation, Policy};
use crate::policy_file::PolicyFile;
use crate::sign::{self, Notation, SignJob};
use qvault_attest::entry::{Event, NOTATION};
use sha2::{Digest, Sha256};

/// What a call may do, from the qrexec service it came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `qvault.Gpg`: list, export public, sign.
    Gpg,
    /// `qvault.Gpg+FINGERPRINT`: as `Gpg`, for that key only (the certificate
    /// with that primary or subkey fingerprint); dom0 allowed the call for it.
    GpgKey(KeyArgument),
    /// `qvault.LogRead`: read-only access to the log.
    LogRead,
}

impl Service {
    /// The service of a qrexec service name with its argument, as the agent
    /// wrote it (socket header) or set it (exec environment). An argument is
    /// accepted only on `qvault.Gpg`, and only as a full key fingerprint.
    pub fn from_name(name: &ServiceName) -> Result<Service, RpcError> {
        let service = Service::named(&name.name)?;
        match (service, name.argument.as_deref()) {
            (s, None) => Ok(s),
            (Service::Gpg, Some(arg)) => KeyArgument::parse(arg)
                .map(Service::GpgKey)
                .map_err(|e| RpcError::new(ErrorCode::Denied, format!("{}: {e}", qubes_rpc::transport::SERVICE_GPG))),
            (_, Some(_)) => Err(RpcError::new(
                ErrorCode::Denied,
                format!("{} takes no argument", qubes_rpc::transport::SERVICE_LOG_READ),
            )),
        }
    }

    /// The key this call is limited to, if any.
    fn bound_key(&self) -> Option<&KeyArgument> {
        match self {
            Service::GpgKey(k) => Some(k),
            _ => None,
        }
    }

    /// The service a qrexec service name (without its `+argument`) names, or
    /// the refusal every serving mode answers for a name that is not ours.
    pub fn named(name: &str) -> Result<Service, RpcError> {
        match name {
            qubes_rpc::transport::SERVICE_GPG => Ok(Service::Gpg),
            qubes_rpc::transport::SERVICE_LOG_READ => Ok(Service::LogRead),
            other => Err(RpcError::new(
                ErrorCode::Denied,
                format!(
                    "unknown service {:?}: this vault serves {} and {}",
                    other.chars().take(80).collect::<String>(),
                    qubes_rpc::transport::SERVICE_GPG,
                    qubes_rpc::transport::SERVICE_LOG_READ
                ),
            )),
        }
    }
}

/// Everything a call needs, shared between calls.
pub struct Vault {
    pub keystore: Keystore,
    pub log: Log,
    /// Read at the start of every call: an edit applies from the next call on.
    pub policy: PolicyFile,
    pub gate: Gate,
    /// The vault's declared state, logged before signing when it changed;
    /// `None` where nothing is signed under a policy file (admin, fuzzing).
    pub declared: Option<crate::declared::Declared>,
    /// Questions go to the desktop helper when set (`serve --ask-socket`),
    /// else to the policy's confirm command.
    pub desktop: Option<std::sync::Arc<crate::desktop::Desktop>>,
}

fn identity(k: &StoredKey) -> KeyIdentity<'_> {
    KeyIdentity {
        fingerprints: k.cert.keys().map(|ka| ka.key().fingerprint().to_hex()).collect(),
        userids: k.cert.userids().filter_map(|u| std::str::from_utf8(u.userid().value()).ok()).collect(),
    }
}

/// A refusal to answer with an `Error` frame.
struct Refusal(RpcError);

impl Refusal {
    fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Refusal(RpcError::new(code, msg))
    }
}

impl From<keystore::SelectError> for Refusal {
    fn from(e: keystore::SelectError) -> Self {
        let mut r = RpcError::new(e.code(), e.to_string());
        match e {
            keystore::SelectError::Expired(fpr, times) => {
                r.key = Some(fpr);
                r.expired_at = times;
            }
            keystore::SelectError::Revoked(fpr) => r.key = Some(fpr),
            _ => {}
        }
        Refusal(r)
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
        Err(Failure::Refused(Refusal(err))) => {
            tracing::info!(source = %source, code = ?err.code, message = %err.message, "request refused");
            writer.send(&ServerFrame::Error(err))?;
            writer.flush()?;
            Ok(())
        }
        Err(Failure::Transport(e)) => {
            // A malformed frame still gets an answer if the peer is listening.
            if !e.is_disconnect() && !matches!(e, FrameError::Io(_)) {
                let _ = writer.send(&ServerFrame::Error(RpcError::new(ErrorCode::BadRequest, e.to_string())));
                let _ = writer.flush();
            }
            Err(e)
        }
    }
}

fn read_request<R: Read>(reader: &mut FrameReader<R>) -> Result<Option<Request>, Failure> {
    let Some(payload) = reader.next_payload()? else { return Ok(None) };
    // The version first: another version's request need not decode as ours.
    if let Some(v) = qubes_rpc::messages::request_version(payload).filter(|&v| v != qubes_rpc::PROTOCOL_VERSION) {
        let e = qubes_rpc::messages::RequestError::Version(v);
        return Err(Refusal::new(ErrorCode::UnsupportedVersion, e.to_string()).into());
    }
    let req = match qubes_rpc::frame::decode::<ClientFrame<'_>>(payload)? {
        ClientFrame::Request(req) => req,
        _ => return Err(Refusal::new(ErrorCode::BadRequest, "expected a request frame first").into()),
    };
    req.validate().map_err(|e| {
        let code = match e {
            qubes_rpc::messages::RequestError::Version(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::BadRequest,
        };
        Refusal::new(code, e.to_string())
    })?;
    // A call is one request; only a signature's data follows it. Bytes that
    // came with a request that takes none are refused, not left unread.
    if !matches!(req.op, Op::Sign(_)) && !reader.get_mut().buffer().is_empty() {
        return Err(Refusal::new(ErrorCode::BadRequest, "bytes after a request that takes no data").into());
    }
    Ok(Some(req))
}

fn dispatch<R: Read, W: Write>(
    vault: &Vault,
    service: Service,
    source: &QubeName,
    req: Request,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Failure> {
    // The policy as the file says now; a broken file refuses every call.
    let policy = vault.policy.current(&vault.log).map_err(|e| Refusal::new(ErrorCode::Unavailable, e.to_string()))?;
    // On qvault.Gpg+FPR, every other key is as absent as one the policy hides.
    let bound = service.bound_key();
    let in_call = |k: &StoredKey| bound.is_none_or(|b| has_fingerprint(k, b));
    let service = match service {
        Service::GpgKey(_) => Service::Gpg,
        s => s,
    };
    match (service, req.op) {
        (Service::Gpg, Op::ListKeys { secret, selectors }) => {
            let keys: Vec<KeyInfo> = vault
                .keystore
                .find(&selectors)
                .into_iter()
                .filter(|k| !secret || k.can_sign())
                .filter(|k| in_call(k))
                .filter(|k| policy.allows_key(source.as_str(), &identity(k), Operation::List))
                .filter_map(StoredKey::info)
                .collect();
            writer.send(&ServerFrame::Keys(keys))?;
            Ok(())
        }
        (Service::Gpg, Op::ExportPublic { selectors }) => {
            let mut out = Vec::new();
            let allowed = vault
                .keystore
                .find(&selectors)
                .into_iter()
                .filter(|k| in_call(k))
                .filter(|k| policy.allows_key(source.as_str(), &identity(k), Operation::ExportPublic));
            for k in allowed {
                keystore::export_public(&k.cert, &mut out)
                    .map_err(|e| Refusal::new(ErrorCode::Internal, format!("cannot serialize certificate: {e}")))?;
            }
            for chunk in out.chunks(CHUNK_SIZE) {
                writer.send(&ServerFrame::Output(chunk))?;
            }
            writer.send(&ServerFrame::Exported)?;
            Ok(())
        }
        (Service::Gpg, Op::Sign(sreq)) => sign(vault, &policy, source, bound, &sreq, reader, writer),
        (_, Op::Checkpoint { old_size }) => {
            let (checkpoint, proof) = vault
                .log
                .consistency(old_size.unwrap_or(0))
                .map_err(|e| Refusal::new(ErrorCode::Internal, format!("log: {e}")))?;
            writer.send(&ServerFrame::Checkpoint(CheckpointReply { checkpoint, consistency: proof }))?;
            Ok(())
        }
        (Service::LogRead, Op::ExportLog) => {
            let mut sink = OutputSink { writer, buf: Vec::with_capacity(CHUNK_SIZE), err: None };
            let res = vault.log.export(&mut sink);
            if let Some(e) = sink.err.take() {
                return Err(Failure::Transport(e));
            }
            res.map_err(|e| Refusal::new(ErrorCode::Internal, format!("log: {e}")))?;
            sink.flush_buf()?;
            writer.send(&ServerFrame::Exported)?;
            Ok(())
        }
        (Service::Gpg, Op::ExportLog) => {
            Err(Refusal::new(ErrorCode::Denied, "the log is exported over qvault.LogRead, not qvault.Gpg").into())
        }
        (Service::LogRead, _) => {
            Err(Refusal::new(ErrorCode::Denied, "qvault.LogRead only reads the log; use qvault.Gpg to sign").into())
        }
        (Service::GpgKey(_), _) => Err(Refusal::new(ErrorCode::Internal, "unreachable: bound service").into()),
    }
}

/// Whether the certificate has `fpr` as its primary or a subkey fingerprint.
fn has_fingerprint(k: &StoredKey, fpr: &KeyArgument) -> bool {
    k.cert.keys().any(|ka| ka.key().fingerprint().to_hex() == fpr.as_str())
}

/// Turns a byte stream into `Output` frames of at most one chunk.
struct OutputSink<'w, W: Write> {
    writer: &'w mut FrameWriter<W>,
    buf: Vec<u8>,
    err: Option<FrameError>,
}

impl<W: Write> OutputSink<'_, W> {
    fn flush_buf(&mut self) -> Result<(), FrameError> {
        if !self.buf.is_empty() {
            self.writer.send(&ServerFrame::Output(&self.buf))?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for OutputSink<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_SIZE {
            if let Err(e) = self.flush_buf() {
                self.err = Some(e);
                return Err(std::io::Error::other("connection failed"));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a log operation failed, as the caller sees it: a stopped or damaged log
/// is the vault being unavailable, not the request being wrong.
fn log_refusal(e: anyhow::Error) -> Refusal {
    if let Some(stopped) = e.downcast_ref::<crate::log::Stopped>() {
        return Refusal::new(ErrorCode::Unavailable, stopped.to_string());
    }
    if let Some(d) = e.downcast_ref::<crate::log::Damage>() {
        return Refusal::new(ErrorCode::Unavailable, format!("the vault's log needs its operator: {d}"));
    }
    Refusal::new(ErrorCode::Internal, format!("log: {e:#}"))
}

/// What policy decided for one signing call.
struct Authorized<'k> {
    key: keystore::SigningKey<'k>,
    op: Operation,
    rule: &'k crate::policy::Rule,
    primary: String,
}

fn sign<R: Read, W: Write>(
    vault: &Vault,
    policy: &Policy,
    source: &QubeName,
    bound: Option<&KeyArgument>,
    req: &SignRequest,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Failure> {
    let auth = authorize(vault, policy, source, bound, req)?;
    let (digest, pk_algo) = (req.digest.unwrap_or(sign::DEFAULT_HASH), auth.key.key.pk_algo());
    sign::check_digest_for_key(digest, pk_algo, &auth.key.key.keyid().to_hex())
        .map_err(|e| Refusal::new(ErrorCode::BadRequest, e))?;
    let mut job = SignJob::new(req).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
    let plan = job.plan(&auth.key, auth.rule.client_hash, auth.rule.max_data_bytes);
    writer.send(&ServerFrame::Ready(plan.clone()))?;
    writer.flush().map_err(FrameError::from)?;
    // The summary reads the data as it streams past; never for a client-hashed
    // call (the vault sees no data), nor when policy turned summaries off.
    let mut sniffer = auth.rule.summaries.then(crate::summary::Sniffer::new);
    let received = receive(&mut job, &plan, auth.rule.max_data_bytes, reader, sniffer.as_mut())?;
    let summary = sniffer.filter(|_| !job.client_hashed()).and_then(|s| s.summary());
    let decision = confirm_call(vault, policy, source, &auth, &job, received, req, summary.as_deref())?;
    let made = sign_and_record(vault, source, auth, job, &plan, decision, req, summary)?;
    writer.send(&ServerFrame::Signed(made))?;
    Ok(())
}

/// Selects the key among those the policy lets this caller see, and applies
/// the policy (rule, deny, rate limit).
fn authorize<'a>(
    vault: &'a Vault,
    policy: &'a Policy,
    source: &QubeName,
    bound: Option<&KeyArgument>,
    req: &SignRequest,
) -> Result<Authorized<'a>, Refusal> {
    let visible = |k: &StoredKey| policy.visible(source.as_str(), &identity(k));
    // A call for one key (qvault.Gpg+FPR) signs with that key or not at all:
    // without a selector it selects that key; with one, the key selected must
    // be it.
    let selector = req.key.as_deref().or(bound.map(KeyArgument::as_str));
    let key = vault.keystore.signing_key(selector, visible).map_err(Refusal::from)?;
    if let Some(b) = bound.filter(|b| !has_fingerprint(key.stored, b)) {
        return Err(Refusal::new(
            ErrorCode::Denied,
            format!(
                "this call was allowed for key {b} only (qvault.Gpg+{b}), not for key {}",
                key.stored.cert.fingerprint().to_hex()
            ),
        ));
    }
    let op = match req.mode {
        SignMode::Detached => Operation::SignDetached,
        SignMode::Cleartext => Operation::SignCleartext,
        SignMode::Inline => Operation::SignInline,
    };
    let primary = key.stored.cert.fingerprint().to_hex();
    let denied = || {
        Refusal::new(
            ErrorCode::Denied,
            format!("the vault's policy does not allow {} with key {primary} for qube {source}", op.name()),
        )
    };
    let rule = policy.decide(source.as_str(), &identity(key.stored), op).ok_or_else(denied)?;
    if rule.confirm == Confirm::Deny {
        return Err(denied());
    }
    if let Some(limit) = rule.rate_per_minute {
        let ok = vault
            .gate
            .rate_ok(rule.line, source.as_str(), limit)
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("policy state: {e}")))?;
        if !ok {
            return Err(Refusal::new(
                ErrorCode::Denied,
                format!("rate limit: at most {limit} signatures per minute for qube {source}"),
            ));
        }
    }
    Ok(Authorized { key, op, rule, primary })
}

/// Reads the data (or the client's hash state) into the job, within the
/// caller's size limit. Returns the number of bytes received.
fn receive<R: Read>(
    job: &mut SignJob,
    plan: &qubes_rpc::SignPlan,
    max: Option<u64>,
    reader: &mut FrameReader<R>,
    mut sniffer: Option<&mut crate::summary::Sniffer>,
) -> Result<u64, Failure> {
    let max = max.unwrap_or(u64::MAX);
    let too_large = || Refusal(RpcError::too_large(max));
    let mut received = 0u64;
    loop {
        match reader.next::<ClientFrame<'_>>()? {
            Some(ClientFrame::Data(d)) => {
                received += d.len() as u64;
                if received > max {
                    return Err(too_large().into());
                }
                job.update(d).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
                if let Some(s) = sniffer.as_deref_mut() {
                    s.update(d);
                }
            }
            Some(ClientFrame::End) => break,
            // The client hashed the data itself: allowed only when the plan
            // said so, and only in place of the data.
            Some(ClientFrame::HashState(state)) if plan.client_hash && received == 0 => {
                if state.len > max {
                    return Err(too_large().into());
                }
                job.set_client_state(&state).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
                received = state.len;
                break;
            }
            Some(ClientFrame::HashState(_)) => return Err(Refusal::new(
                ErrorCode::BadRequest,
                "a hash state the vault did not ask for (client-side hashing is off for this caller, or data was sent)",
            )
            .into()),
            Some(ClientFrame::Request(_)) => {
                return Err(Refusal::new(ErrorCode::BadRequest, "unexpected request frame in the data stream").into())
            }
            None => return Err(FrameError::Truncated.into()),
        }
    }
    // The vault reads nothing after the data ends: bytes that came with End or
    // a hash state are refused, not left unread.
    if !reader.get_mut().buffer().is_empty() {
        return Err(Refusal::new(ErrorCode::BadRequest, "bytes after the end of the data").into());
    }
    Ok(received)
}

/// Asks in the vault when the rule says so (or takes the answer remembered
/// for this caller, key and rule); returns the decision as logged.
#[allow(clippy::too_many_arguments)]
fn confirm_call(
    vault: &Vault,
    policy: &Policy,
    source: &QubeName,
    auth: &Authorized<'_>,
    job: &SignJob,
    received: u64,
    req: &SignRequest,
    summary: Option<&str>,
) -> Result<String, Refusal> {
    let rule = auth.rule;
    let auto_accept = match rule.confirm {
        Confirm::Allow => return Ok(format!("allow (policy line {})", rule.line)),
        Confirm::Deny => return Err(Refusal::new(ErrorCode::Denied, "denied by the vault's policy")),
        Confirm::Ask { auto_accept } => auto_accept,
    };
    let ask = || {
        let digest = match job.data_digest() {
            Ok(d) => d,
            Err(e) => return Answer::Failed(format!("data digest: {e}")),
        };
        let uid = auth
            .key
            .stored
            .cert
            .userids()
            .next()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
            .unwrap_or_default();
        let q = Question {
            caller: source.as_str(),
            key: &auth.primary,
            userid: &uid,
            operation: auth.op.name(),
            size: received,
            digest: &hex::encode(digest),
            hash_algo: &hash_name(req),
            client_hashed: job.client_hashed(),
            summary,
        };
        match &vault.desktop {
            Some(desk) => desk.ask(&q, policy.confirm.timeout),
            None => confirm::ask(&policy.confirm, &q),
        }
    };
    let settled = vault
        .gate
        .confirm(source.as_str(), &auth.primary, &rule.id, auto_accept, ask)
        .map_err(|e| Refusal::new(ErrorCode::Internal, format!("policy state: {e}")))?;
    confirmation_decision(settled, rule.line, source)
}

fn hash_name(req: &SignRequest) -> String {
    format!("{}", sign::hash_algorithm(req.digest.unwrap_or(sign::DEFAULT_HASH)))
}

/// Reserves the signature's log index (it goes into the signature), signs
/// outside the log's locks, commits the entry, and builds the answer. Nothing
/// is returned before the entry is durable.
#[allow(clippy::too_many_arguments)]
fn sign_and_record(
    vault: &Vault,
    source: &QubeName,
    auth: Authorized<'_>,
    job: SignJob,
    plan: &qubes_rpc::SignPlan,
    decision: String,
    req: &SignRequest,
    summary: Option<String>,
) -> Result<SignResult, Refusal> {
    // The state the vault signs under is on the record before the signature.
    if let (Some(d), Some(policy)) = (&vault.declared, vault.policy.digest()) {
        d.declare(&vault.log, &policy, false).map_err(log_refusal)?;
    }
    let created = SystemTime::now();
    let mode = match req.mode {
        SignMode::Detached => "detached",
        SignMode::Cleartext => "cleartext",
        SignMode::Inline => "inline",
    };
    let sig_type = if plan.sig_class == 1 { "text" } else { "binary" };
    let reservation = vault.log.reserve(Some(source.as_str())).map_err(log_refusal)?;
    let index = reservation.index();
    let notation = Notation { name: NOTATION.into(), value: format!("{} {index}", vault.log.origin()) };
    let signed = job.finish(&auth.key, created, &[notation]).and_then(|finished| {
        let mut signature = Vec::new();
        openpgp::Packet::from(finished.signature.clone()).serialize(&mut signature)?;
        Ok((finished, signature))
    });
    let (finished, signature) = match signed {
        Ok(s) => s,
        Err(e) => {
            reservation.abandon("the signer failed");
            return Err(Refusal::new(ErrorCode::Internal, format!("signing failed: {e:#}")));
        }
    };
    let event = Event::Signature {
        key: plan.signer_fpr.clone(),
        primary: plan.primary_fpr.clone(),
        sig_type: sig_type.into(),
        mode: mode.into(),
        hash_algo: hash_name(req),
        data_digest: hex::encode(&finished.data_digest),
        data_len: finished.data_len,
        sig_digest: hex::encode(Sha256::digest(&signature)),
        decision,
        hashed_by: finished.client_hashed.then(|| "client".to_owned()),
        summary,
    };
    let (index, entry_bytes) = vault.log.commit(reservation, event).map_err(log_refusal)?;
    let provenance = &auth.key.stored.provenance;
    let key_entry = Some((provenance.log_index, provenance.log_entry.clone().into_bytes()));
    let receipt = vault.log.receipt(index, entry_bytes, key_entry, req.known_log_size).map_err(log_refusal)?;
    tracing::info!(source = %source, key = %plan.signer_fpr, bytes = finished.data_len, index, "signature made");
    let created = finished
        .signature
        .signature_creation_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    Ok(SignResult {
        signature,
        sig_class: plan.sig_class,
        pk_algo: plan.pk_algo,
        hash_algo: plan.hash_algo,
        created,
        signer_fpr: plan.signer_fpr.clone(),
        primary_fpr: plan.primary_fpr.clone(),
        receipt: receipt.encode(),
        log_key: vault.log.verifier().encode(),
    })
}

/// The log's `decision` for a settled question, or the caller's refusal.
fn confirmation_decision(settled: Confirmation, line: usize, source: &QubeName) -> Result<String, Refusal> {
    let denied = |why: &str| Err(Refusal::new(ErrorCode::Denied, why));
    match settled {
        Confirmation::AutoAccepted => Ok(format!("ask: auto-accepted (policy line {line})")),
        Confirmation::Asked(Answer::Approved) => Ok(format!("ask: approved (policy line {line})")),
        Confirmation::RememberedNo => {
            denied("the request was denied in the vault (a \"no\" to this request is remembered for a while)")
        }
        Confirmation::Pending => {
            Err(Refusal::new(ErrorCode::Denied, format!("a confirmation for qube {source} is already pending")))
        }
        Confirmation::Asked(Answer::Denied) => denied("the request was denied in the vault"),
        Confirmation::Asked(Answer::TimedOut) => denied("the confirmation timed out in the vault"),
        Confirmation::Asked(Answer::Failed(e)) => {
            tracing::warn!("confirmation command failed: {e}");
            denied("the vault could not ask for confirmation")
        }
    }
}
