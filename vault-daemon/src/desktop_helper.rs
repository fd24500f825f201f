//! `qvault desktop`: the desktop helper. Runs in the vault qube's graphical
//! session as the desktop user, connects to the daemon's ask socket, checks
//! that the socket is served by the daemon's user (SO_PEERCRED), and shows
//! each question as a zenity dialog ("Refuse" is the default button, so a
//! stray Enter refuses). It answers yes, no, or timeout, and closes a dialog
//! the daemon cancels. It holds no secret and decides nothing itself.
//!
//! Each question shown and each answer is written to standard output as one
//! JSON line (`{"event":"shown",...}`, `{"event":"answered",...}`): the
//! session's log of what was asked, and what the tests count.

use std::collections::HashMap;
use std::io::{BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Uid;

use crate::ask_wire::{self, Reply, ToDaemon, ToHelper};

pub struct Options {
    pub socket: PathBuf,
    pub daemon_uid: Uid,
    pub zenity: PathBuf,
}

/// Most dialogs on screen at once; more questions are answered "failed".
const MAX_DIALOGS: usize = 8;
/// Longest a question may stay on screen, whatever the daemon asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Wait before reconnecting to a daemon that is not (yet) there.
const RETRY: Duration = Duration::from_secs(2);
/// How much longer than the daemon a dialog stays up.
const GRACE: Duration = Duration::from_secs(2);

/// One JSON line on standard output.
fn event(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Serves the daemon, reconnecting whenever the connection ends.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    loop {
        match serve(opts) {
            Ok(()) => tracing::info!("the vault daemon closed the connection"),
            Err(e) => tracing::warn!("{e:#}"),
        }
        event(serde_json::json!({ "event": "disconnected" }));
        std::thread::sleep(RETRY);
    }
}

type Dialogs = Arc<Mutex<HashMap<u64, Arc<AtomicBool>>>>;

fn serve(opts: &Options) -> anyhow::Result<()> {
    let stream =
        UnixStream::connect(&opts.socket).with_context(|| format!("connecting to {}", opts.socket.display()))?;
    let uid = getsockopt(&stream, PeerCredentials).context("peer credentials")?.uid();
    anyhow::ensure!(
        uid == opts.daemon_uid.as_raw(),
        "{} is served by uid {uid}, not by the vault daemon's user (uid {}): not answering it",
        opts.socket.display(),
        opts.daemon_uid
    );
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let mut r = BufReader::new(stream);
    match ask_wire::read::<ToHelper>(&mut r)? {
        Some(ToHelper::Hello { version: ask_wire::VERSION }) => {}
        other => anyhow::bail!("the daemon did not say hello (version {}): {other:?}", ask_wire::VERSION),
    }
    event(serde_json::json!({ "event": "connected", "socket": opts.socket }));
    let dialogs: Dialogs = Arc::default();
    let result = loop {
        match ask_wire::read::<ToHelper>(&mut r) {
            Ok(Some(ToHelper::Ask { id, title, message, timeout_seconds })) => {
                let cancel = Arc::new(AtomicBool::new(false));
                {
                    let mut d = dialogs.lock().unwrap_or_else(|p| p.into_inner());
                    if d.len() >= MAX_DIALOGS || d.contains_key(&id) {
                        drop(d);
                        answer(&writer, id, Reply::Failed);
                        continue;
                    }
                    d.insert(id, cancel.clone());
                }
                // A little longer than the daemon waits: normally its cancel
                // closes the dialog, and a late click cannot count.
                let timeout = Duration::from_secs(timeout_seconds).min(MAX_TIMEOUT) + GRACE;
                let (w, d, zenity) = (writer.clone(), dialogs.clone(), opts.zenity.clone());
                std::thread::spawn(move || {
                    let reply = show(&zenity, id, &title, &message, timeout, &cancel);
                    d.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    if let Some(reply) = reply {
                        answer(&w, id, reply);
                    }
                });
            }
            Ok(Some(ToHelper::Cancel { id })) => {
                if let Some(c) = dialogs.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
                    c.store(true, Ordering::SeqCst);
                }
            }
            Ok(Some(ToHelper::Hello { .. })) => break Err(anyhow::anyhow!("a second hello from the daemon")),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        }
    };
    // Nobody is waiting for these any more.
    for c in dialogs.lock().unwrap_or_else(|p| p.into_inner()).values() {
        c.store(true, Ordering::SeqCst);
    }
    result
}

fn answer(writer: &Mutex<UnixStream>, id: u64, reply: Reply) {
    event(serde_json::json!({ "event": "answered", "id": id, "reply": reply }));
    let w = writer.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = (&*w).write_all(&ask_wire::encode(&ToDaemon::Answer { id, reply })) {
        tracing::warn!("cannot send the answer to the daemon: {e}");
    }
}

/// Shows one question until it is answered, times out or is cancelled
/// (`None`: cancelled, nothing to send).
fn show(
    zenity: &std::path::Path,
    id: u64,
    title: &str,
    message: &str,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Option<Reply> {
    event(serde_json::json!({ "event": "shown", "id": id, "title": title, "message": message }));
    let child = Command::new(zenity)
        .arg("--question")
        .arg(format!("--title={title}"))
        // The text holds the caller's words (a summary): never markup.
        .arg("--no-markup")
        .arg(format!("--text={message}"))
        .arg("--ok-label=_Sign")
        .arg("--cancel-label=_Refuse")
        .arg("--default-cancel")
        .arg("--width=560")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot run {}: {e}", zenity.display());
            return Some(Reply::Failed);
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            // zenity: 0 the OK button, 1 Cancel or the window closed, 5 its own timeout.
            Ok(Some(st)) => {
                return Some(match st.code() {
                    Some(0) => Reply::Yes,
                    Some(1) => Reply::No,
                    Some(5) => Reply::Timeout,
                    _ => Reply::Failed,
                })
            }
            Ok(None) if cancel.load(Ordering::SeqCst) => {
                let _ = child.kill();
                let _ = child.wait();
                event(serde_json::json!({ "event": "cancelled", "id": id }));
                return None;
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Some(Reply::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                tracing::warn!("waiting for the dialog: {e}");
                return Some(Reply::Failed);
            }
        }
    }
}
