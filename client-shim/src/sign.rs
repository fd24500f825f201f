//! Signing: the data streams to the vault (which hashes and signs it) and, for
//! cleartext and inline signatures, to the output at the same time; the vault's
//! signature packet is then wrapped in the format gpg would have written.
//! When the vault's policy lets this qube hash the data itself (`client_hash`),
//! the data is hashed here instead and only the SHA-256 state is sent: the data
//! then never crosses the qube boundary, which is what makes large files fast.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt as _;

use openpgp::armor;
use openpgp::packet::one_pass_sig::OnePassSig3;
use openpgp::packet::Signature;
use openpgp::parse::Parse as _;
use openpgp::serialize::stream::{Armorer, LiteralWriter, Message};
use openpgp::serialize::Marshal as _;
use openpgp::types::{DataFormat, HashAlgorithm, PublicKeyAlgorithm, SignatureType};
use openpgp::{KeyID, Packet};
use qubes_rpc::canon::{Canon, Canonicalizer};
use qubes_rpc::prehash::Sha256Midstate;
use qubes_rpc::{ClientFrame, Op, RpcError, ServerFrame, SignMode, SignPlan, SignRequest, SignResult, CHUNK_SIZE};
use sequoia_openpgp as openpgp;

use crate::args::Invocation;
use crate::dash_escape::DashEscaper;
use crate::error::ShimError;
use crate::output::{open_input, Name, Output};
use crate::receipts;
use crate::status::{Status, StatusOut};
use crate::vault::Conn;

fn default_output_name(inv: &Invocation, mode: SignMode) -> Option<OsString> {
    if inv.output.is_some() {
        return inv.output.clone();
    }
    match inv.operands.as_slice() {
        // A descriptor (`-&N`), like stdin, has no name to derive one from.
        [f] if !Name::of(f, inv.special_filenames).is_stream() => {
            let ext = match (mode, inv.armor) {
                (SignMode::Cleartext, _) | (_, true) => ".asc",
                (SignMode::Detached, false) => ".sig",
                (SignMode::Inline, false) => ".gpg",
            };
            let mut name = f.clone();
            name.push(ext);
            Some(name)
        }
        _ => None,
    }
}

/// Writes the parts of a cleartext or inline message that come before and with
/// the data.
enum Framer<'a> {
    Detached,
    Cleartext { out: &'a mut Output, escape: DashEscaper },
    Inline { w: Message<'a>, canon: Option<Canonicalizer> },
}

fn openpgp_err(e: impl std::fmt::Display) -> ShimError {
    ShimError::OpenPgp(e.to_string())
}

impl<'a> Framer<'a> {
    fn new(
        mode: SignMode,
        armor_out: bool,
        text: bool,
        mime: bool,
        filename: Option<&[u8]>,
        plan: &SignPlan,
        out: &'a mut Output,
    ) -> Result<Framer<'a>, ShimError> {
        match mode {
            SignMode::Detached => Ok(Framer::Detached),
            SignMode::Cleartext => {
                let name = HashAlgorithm::from(plan.hash_algo).to_string();
                write!(out, "-----BEGIN PGP SIGNED MESSAGE-----\nHash: {name}\n\n")
                    .map_err(ShimError::io("writing output"))?;
                Ok(Framer::Cleartext { out, escape: DashEscaper::default() })
            }
            SignMode::Inline => {
                let mut msg = Message::new(out);
                if armor_out {
                    msg = Armorer::new(msg).kind(armor::Kind::Message).build().map_err(openpgp_err)?;
                }
                let typ = if text { SignatureType::Text } else { SignatureType::Binary };
                let mut ops = OnePassSig3::new(typ);
                ops.set_hash_algo(HashAlgorithm::from(plan.hash_algo));
                ops.set_pk_algo(PublicKeyAlgorithm::from(plan.pk_algo));
                let fpr: openpgp::Fingerprint = plan.signer_fpr.parse().map_err(openpgp_err)?;
                ops.set_issuer(KeyID::from(&fpr));
                ops.set_last(true);
                Packet::from(ops).serialize(&mut msg).map_err(openpgp_err)?;
                // As gpg does, text goes into the literal packet with CR LF line
                // endings ('t' format), which is what verifiers hash.
                // `--mimemode`: format 'm' (RFC 4880 5.9), as gpg writes it.
                #[allow(deprecated)]
                let format = match (mime, text) {
                    (true, _) => DataFormat::Unknown(b'm'),
                    (false, true) => DataFormat::Text,
                    (false, false) => DataFormat::Binary,
                };
                let mut lit = LiteralWriter::new(msg).format(format);
                if let Some(name) = filename {
                    lit = lit.filename(name).map_err(openpgp_err)?;
                }
                let lit = lit.date(std::time::SystemTime::now()).map_err(openpgp_err)?.build().map_err(openpgp_err)?;
                Ok(Framer::Inline { w: lit, canon: text.then(|| Canonicalizer::new(Canon::Text)) })
            }
        }
    }

    fn data(&mut self, data: &[u8]) -> Result<(), ShimError> {
        match self {
            Framer::Detached => Ok(()),
            Framer::Cleartext { out, escape } => {
                escape.push(data, &mut |b| out.write_all(b)).map_err(ShimError::io("writing output"))
            }
            Framer::Inline { w, canon: None } => w.write_all(data).map_err(ShimError::io("writing output")),
            Framer::Inline { w, canon: Some(c) } => {
                let mut res = Ok(());
                c.update(data, &mut |b| {
                    if res.is_ok() {
                        res = w.write_all(b);
                    }
                })
                .map_err(|e| ShimError::Usage(e.to_string()))?;
                res.map_err(ShimError::io("writing output"))
            }
        }
    }

    fn finish(self, sig: &Signature, armor_out: bool, out_detached: Option<&mut Output>) -> Result<(), ShimError> {
        let packet = Packet::from(sig.clone());
        match self {
            Framer::Detached => {
                let out = out_detached.ok_or_else(|| ShimError::OpenPgp("no output".into()))?;
                if armor_out {
                    let mut w = armor::Writer::new(&mut *out, armor::Kind::Signature).map_err(openpgp_err)?;
                    packet.serialize(&mut w).map_err(openpgp_err)?;
                    w.finalize().map_err(openpgp_err)?;
                } else {
                    packet.serialize(out).map_err(openpgp_err)?;
                }
                Ok(())
            }
            Framer::Cleartext { out, mut escape } => {
                escape.finish(&mut |b| out.write_all(b)).map_err(ShimError::io("writing output"))?;
                if escape.last() != Some(b'\n') {
                    out.write_all(b"\n").map_err(ShimError::io("writing output"))?;
                }
                let mut w = armor::Writer::new(out, armor::Kind::Signature).map_err(openpgp_err)?;
                packet.serialize(&mut w).map_err(openpgp_err)?;
                w.finalize().map_err(openpgp_err)?;
                Ok(())
            }
            Framer::Inline { w: lit, .. } => {
                let mut msg = lit.finalize_one().map_err(openpgp_err)?.ok_or_else(|| openpgp_err("no message"))?;
                packet.serialize(&mut msg).map_err(openpgp_err)?;
                msg.finalize().map_err(openpgp_err)?;
                Ok(())
            }
        }
    }
}

pub fn sign(inv: &Invocation, mode: SignMode, status: &mut StatusOut) -> Result<(), ShimError> {
    if inv.local_users.len() > 1 {
        return Err(ShimError::Usage("signing with more than one key (-u given twice) is not supported".into()));
    }
    let key = match inv.local_users.first().or(inv.default_key.as_ref()) {
        None => None,
        Some(k) => Some(k.to_str().map(str::to_owned).ok_or_else(|| unusable_selector(k, status))?),
    };
    // The client "knows" the key when it has its full fingerprint: from -u
    // (or --default-key), else from client.toml's `key`. Then the call is
    // qvault.Gpg+FINGERPRINT (dom0 can allow one qube one key); a short key
    // ID or a user ID could name other keys, so those calls stay qvault.Gpg.
    let (key, bound) = match key {
        Some(k) => {
            let bound = qubes_rpc::KeyArgument::from_selector(&k);
            (Some(k), bound)
        }
        None => match crate::vault::configured_key()? {
            Some(b) => (Some(b.to_string()), Some(b)),
            None => (None, None),
        },
    };
    let out_name = default_output_name(inv, mode);
    let mut input = open_input(&inv.operands, inv.special_filenames)?;
    let mut out = Output::create(out_name.as_deref(), inv.yes, inv.special_filenames)?;

    // Local failures (no input, output exists) are found before the vault is
    // called; then the qrexec client starts while this process reads its log
    // state (on two cores, the two overlap).
    let mut conn = Conn::open_for(bound.as_ref())?;
    let mut log_state = receipts::LogState::load(conn.vault());
    // Small data (a Release file, a commit, a .changes) is read whole first
    // and goes with the request, without waiting for the vault's plan: one
    // round trip through qrexec fewer. It is not offered for hashing here.
    let mut head = Vec::new();
    let small = read_head(&mut input, &mut head, EAGER_MAX)?;
    let req = SignRequest {
        key: key.clone(),
        mode,
        armor: inv.armor,
        digest: inv.digest,
        text: inv.text,
        known_log_size: log_state.known_size(),
        client_hash: !small,
    };
    conn.request_with_data(Op::Sign(req), small.then_some(&head[..]))
        .map_err(|e| signer_error(e, key.as_deref(), status))?;
    let plan = match conn.recv().map_err(|e| signer_error(e, key.as_deref(), status))? {
        ServerFrame::Ready(p) => p,
        other => return Err(ShimError::Protocol(format!("unexpected answer {:?}", frame_name(&other)))),
    };
    if small && plan.client_hash {
        return Err(ShimError::Protocol("the vault asked for a hash of data sent in full".into()));
    }
    status.emit(Status::KeyConsidered { fpr: &plan.primary_fpr, flags: 0 });
    status.emit(Status::BeginSigning { hash: plan.hash_algo });

    let result = {
        let mut framer = match mode {
            SignMode::Detached => Framer::Detached,
            _ => {
                // As gpg, the literal packet carries `--set-filename` or the
                // file name's bytes (none for stdin or a descriptor).
                let name = match (&inv.set_filename, inv.operands.as_slice()) {
                    (Some(n), _) => Some(n.as_bytes()),
                    (None, [f]) if !Name::of(f, inv.special_filenames).is_stream() => {
                        std::path::Path::new(f).file_name().map(|n| n.as_bytes())
                    }
                    _ => None,
                };
                Framer::new(mode, inv.armor, inv.text, inv.mime, name, &plan, &mut out)?
            }
        };
        if small {
            // Already with the vault.
            framer.data(&head)?;
        } else {
            let mut local = plan.client_hash.then(|| LocalHash::new(mode, inv.text));
            let mut read = 0u64;
            let mut feed = |chunk: &[u8]| -> Result<(), ShimError> {
                read += chunk.len() as u64;
                match &mut local {
                    Some(h) => {
                        h.update(chunk)?;
                        // The vault would refuse this much data streamed (it counts
                        // the bytes read) or hashed (it counts the canonical length):
                        // stop here, as the streamed path stops, with its error.
                        if let Some(max) = plan.max_data_bytes.filter(|&m| read > m || h.state.len() > m) {
                            return Err(ShimError::Vault(RpcError::too_large(max)));
                        }
                    }
                    None => conn.send(&ClientFrame::Data(chunk))?,
                }
                framer.data(chunk)
            };
            feed(&head)?;
            // Hashing here, the data is read in larger pieces: no frame limits it.
            let mut buf = vec![0u8; if plan.client_hash { LOCAL_CHUNK } else { CHUNK_SIZE }];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ShimError::Io("reading input".into(), e)),
                };
                feed(&buf[..n])?;
            }
            match local {
                Some(h) => conn.send(&ClientFrame::HashState(h.state.to_wire()))?,
                None => conn.send(&ClientFrame::End)?,
            }
            conn.writer.flush().map_err(ShimError::io("writing to qrexec"))?;
        }
        let result: SignResult = match conn.recv()? {
            ServerFrame::Signed(r) => r,
            other => return Err(ShimError::Protocol(format!("unexpected answer {:?}", frame_name(&other)))),
        };
        let sig = match Packet::from_bytes(&result.signature) {
            Ok(Packet::Signature(s)) => s,
            Ok(_) => return Err(ShimError::Protocol("the vault's answer is not a signature packet".into())),
            Err(e) => return Err(ShimError::Protocol(format!("bad signature packet: {e}"))),
        };
        check_result(&plan, &result, &sig)?;
        log_state.accept(&result, &sig)?;
        note_vault_clock(result.created);
        if !matches!(framer, Framer::Detached) {
            framer.finish(&sig, inv.armor, None)?;
        }
        (result, sig)
    };
    let (result, sig) = result;
    if mode == SignMode::Detached {
        Framer::Detached.finish(&sig, inv.armor, Some(&mut out))?;
    }
    conn.finish();
    out.commit()?;
    if let Some(path) = inv.receipt_out.clone().or_else(|| std::env::var_os("QVAULT_RECEIPT_OUT")) {
        receipts::write_receipt_file(std::path::Path::new(&path), &result)?;
    }
    if let Some(path) = inv.proof_out.clone().or_else(|| std::env::var_os("QVAULT_PROOF_OUT")) {
        receipts::write_proof_file(std::path::Path::new(&path), &result)?;
    }
    let kind = match mode {
        SignMode::Detached => 'D',
        SignMode::Cleartext => 'C',
        SignMode::Inline => 'S',
    };
    status.emit(Status::SigCreated {
        kind,
        pk_algo: result.pk_algo,
        hash_algo: result.hash_algo,
        class: result.sig_class,
        ts: result.created,
        fpr: &result.signer_fpr,
    });
    Ok(())
}

/// A vault whose clock runs ahead dates its signatures in the future. gpg
/// itself takes such a signature as good (it never compares a signature's
/// time with its clock; `--verify` here does the same) and so does gpgv, so
/// the signature is released as gpg would release it: exit 0, `SIG_CREATED`
/// with the vault's time. Only a note on stderr, in the words gpg uses for a
/// key from the future, says why sqv and qvault-audit refuse it until then.
fn note_vault_clock(created: i64) {
    let ahead = created.saturating_sub(chrono::Utc::now().timestamp());
    if ahead > CLOCK_SLACK_SECS {
        eprintln!("gpg: Note: signature made {ahead} seconds in the future by the vault (time warp or clock problem)");
    }
}

/// Clocks of two qubes may differ this much without a note.
const CLOCK_SLACK_SECS: i64 = 60;

/// Read size when the client hashes the data itself.
const LOCAL_CHUNK: usize = 1 << 20;
/// Data up to this size goes with the request (one frame, under CHUNK_SIZE).
const EAGER_MAX: usize = 64 << 10;

/// Reads up to `max` bytes of `input` into `head`; true when that was all of it.
fn read_head(input: &mut dyn Read, head: &mut Vec<u8>, max: usize) -> Result<bool, ShimError> {
    // One byte more than `max` tells "exactly max" from "more".
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    input.take(limit).read_to_end(head).map_err(ShimError::io("reading input"))?;
    Ok(head.len() <= max)
}

/// The data hashed in this qube: canonicalized exactly as the vault would
/// (qubes_rpc::canon), then fed to a SHA-256 whose state can be sent.
struct LocalHash {
    canon: Canonicalizer,
    state: Sha256Midstate,
}

impl LocalHash {
    fn new(mode: SignMode, text: bool) -> LocalHash {
        LocalHash { canon: Canonicalizer::new(Canon::for_signing(mode, text)), state: Sha256Midstate::new() }
    }

    fn update(&mut self, data: &[u8]) -> Result<(), ShimError> {
        let state = &mut self.state;
        self.canon.update(data, &mut |b| state.update(b)).map_err(|e| ShimError::Usage(e.to_string()))
    }
}

/// The vault's answer must be the signature it announced.
fn check_result(plan: &SignPlan, r: &SignResult, sig: &Signature) -> Result<(), ShimError> {
    let issuer_ok = sig.issuer_fingerprints().any(|f| f.to_hex() == plan.signer_fpr);
    if !issuer_ok
        || r.signer_fpr != plan.signer_fpr
        || u8::from(sig.hash_algo()) != plan.hash_algo
        || u8::from(sig.typ()) != plan.sig_class
    {
        return Err(ShimError::Protocol("the vault's signature does not match the plan it announced".into()));
    }
    Ok(())
}

fn frame_name(f: &ServerFrame<'_>) -> &'static str {
    match f {
        ServerFrame::Keys(_) => "Keys",
        ServerFrame::Ready(_) => "Ready",
        ServerFrame::Output(_) => "Output",
        ServerFrame::Exported => "Exported",
        ServerFrame::Signed(_) => "Signed",
        ServerFrame::Checkpoint(_) => "Checkpoint",
        ServerFrame::Error(_) => "Error",
    }
}

/// A key selector that is not UTF-8 names no key (user IDs are UTF-8 and
/// fingerprints hex): refused here, without asking the vault, as gpg refuses
/// a key it cannot find.
fn unusable_selector(k: &std::ffi::OsStr, status: &mut StatusOut) -> ShimError {
    let who = k.to_string_lossy();
    status.emit(Status::InvSgnr { reason: 9, who: &who });
    status.emit(Status::Failure { location: "sign", code: 17 });
    eprintln!("gpg: skipped \"{who}\": No secret key");
    ShimError::Usage("signing failed: No secret key".into())
}

/// Key-selection failures get gpg's status lines and messages for an unusable
/// signer (as GnuPG 2.2 prints them).
fn signer_error(e: ShimError, key: Option<&str>, status: &mut StatusOut) -> ShimError {
    let ShimError::Vault(err) = &e else { return e };
    use qubes_rpc::ErrorCode::*;
    let who = key.unwrap_or("");
    let why = match err.code {
        UnknownKey => {
            status.emit(Status::InvSgnr { reason: 9, who });
            status.emit(Status::Failure { location: "sign", code: 17 });
            "No secret key"
        }
        KeyExpired | KeyRevoked => {
            for ts in &err.expired_at {
                status.emit(Status::KeyExpired { ts: *ts });
            }
            if let Some(fpr) = &err.key {
                status.emit(Status::KeyConsidered { fpr, flags: 3 });
            }
            status.emit(Status::InvSgnr { reason: 9, who });
            status.emit(Status::Failure { location: "sign", code: 54 });
            "Unusable secret key"
        }
        _ => {
            status.emit(Status::Failure { location: "sign", code: 17 });
            return e;
        }
    };
    eprintln!("gpg: skipped \"{who}\": {why}");
    ShimError::Usage(format!("signing failed: {why} ({})", err.message))
}
