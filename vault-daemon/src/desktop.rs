//! The vault's question on its desktop, for a daemon that cannot reach the
//! display itself (the packaged system unit: another user, no /tmp/.X11-unix,
//! no home). The desktop helper, `qvault desktop`, runs in the user's
//! graphical session and connects to the daemon's ask socket; the daemon sends
//! it each question and waits for the answer up to the policy's timeout.
//!
//! Only the configured desktop user may be the helper: the kernel's
//! SO_PEERCRED says who connected, and any other uid is closed at once. The
//! newest accepted connection is the helper (a restarted helper replaces a
//! stale one); questions waiting on a replaced or closed connection are
//! settled as "could not ask". With no helper connected, a question fails at
//! once (the caller is refused, not kept waiting). The daemon keeps its own
//! deadline: a helper that never answers costs the caller the timeout, no more.
//! See docs/design-notes.md for the security argument.

use std::collections::HashMap;
use std::io::{BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Uid;

use crate::ask_wire::{self, Reply, ToDaemon, ToHelper};
use crate::confirm::{Answer, Question};

/// How long a write to the helper may block (it reads all the time).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Desktop {
    socket: PathBuf,
    /// `None`: the configured desktop user does not exist; nobody is kept.
    helper_uid: Option<Uid>,
    state: Mutex<State>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The current helper: its connection's serial number and stream.
    helper: Option<(u64, UnixStream)>,
    /// Questions waiting for an answer: id -> (connection serial, answer slot).
    waiting: HashMap<u64, (u64, mpsc::Sender<Reply>)>,
}

impl Desktop {
    /// Binds the ask socket and accepts helpers running as `helper_uid`
    /// (`None`: as nobody; every question then fails, saying why).
    pub fn listen(socket: &Path, helper_uid: Option<Uid>) -> anyhow::Result<Arc<Desktop>> {
        if socket.exists() {
            if UnixStream::connect(socket).is_ok() {
                anyhow::bail!("another daemon is listening on {}", socket.display());
            }
            std::fs::remove_file(socket).with_context(|| format!("removing stale socket {}", socket.display()))?;
        }
        let listener = UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
        // Anyone may connect; SO_PEERCRED decides who is kept (the daemon's
        // umask would otherwise shut out the desktop user).
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))?;
        let desk = Arc::new(Desktop {
            socket: socket.to_owned(),
            helper_uid,
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let d = desk.clone();
        std::thread::Builder::new().name("desktop-accept".into()).spawn(move || d.accept_loop(listener))?;
        match helper_uid {
            Some(uid) => {
                tracing::info!(socket = %socket.display(), uid = uid.as_raw(), "asking through the desktop helper")
            }
            None => {
                tracing::warn!(socket = %socket.display(), "the desktop user does not exist: questions are refused")
            }
        }
        Ok(desk)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        let mut serial = 0u64;
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("ask socket: accept failed: {e}");
                    continue;
                }
            };
            let uid = match getsockopt(&stream, PeerCredentials) {
                Ok(c) => c.uid(),
                Err(e) => {
                    tracing::warn!("ask socket: no peer credentials: {e}");
                    continue;
                }
            };
            if Some(uid) != self.helper_uid.map(Uid::as_raw) {
                tracing::warn!(uid, "ask socket: refused a connection from a uid that is not the desktop user's");
                continue;
            }
            serial += 1;
            if let Err(e) = self.adopt(serial, stream) {
                tracing::warn!("ask socket: helper connection failed: {e}");
            }
        }
    }

    /// Makes `stream` the helper, replacing (and closing) any previous one.
    fn adopt(self: &Arc<Self>, serial: u64, stream: UnixStream) -> anyhow::Result<()> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        (&stream).write_all(&ask_wire::encode(&ToHelper::Hello { version: ask_wire::VERSION }))?;
        let reader = stream.try_clone()?;
        {
            let mut st = self.state();
            if let Some((old, s)) = st.helper.replace((serial, stream)) {
                tracing::info!("a new desktop helper replaces the previous one");
                let _ = s.shutdown(std::net::Shutdown::Both);
                st.waiting.retain(|_, (conn, _)| *conn != old);
            }
        }
        tracing::info!("desktop helper connected");
        let d = self.clone();
        std::thread::Builder::new().name("desktop-read".into()).spawn(move || d.read_loop(serial, reader))?;
        Ok(())
    }

    /// Hands the helper's answers to the questions waiting for them.
    fn read_loop(&self, serial: u64, stream: UnixStream) {
        let mut r = BufReader::new(stream);
        loop {
            match ask_wire::read::<ToDaemon>(&mut r) {
                Ok(Some(ToDaemon::Answer { id, reply })) => {
                    let mut st = self.state();
                    // Only an answer from the connection the question went to.
                    if st.waiting.get(&id).is_some_and(|(conn, _)| *conn == serial) {
                        if let Some((_, tx)) = st.waiting.remove(&id) {
                            let _ = tx.send(reply);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("desktop helper: {e}; closing its connection");
                    break;
                }
            }
        }
        let mut st = self.state();
        if st.helper.as_ref().is_some_and(|(s, _)| *s == serial) {
            if let Some((_, s)) = st.helper.take() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            tracing::info!("desktop helper disconnected");
        }
        // Dropping their answer slots settles these questions as failed.
        st.waiting.retain(|_, (conn, _)| *conn != serial);
    }

    /// Asks the question through the helper and waits up to `timeout`.
    pub fn ask(&self, q: &Question<'_>, timeout: Duration) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let msg = ToHelper::Ask { id, title: q.title(), message: q.message(), timeout_seconds: timeout.as_secs() };
        if self.helper_uid.is_none() {
            return Answer::Failed("the desktop user (serve --ask-user) does not exist on this system".into());
        }
        {
            let mut st = self.state();
            let Some((serial, stream)) = &st.helper else {
                return Answer::Failed(
                    "no desktop helper is connected (is `qvault desktop` running in the vault's graphical session?)"
                        .into(),
                );
            };
            let serial = *serial;
            if let Err(e) = (&*stream).write_all(&ask_wire::encode(&msg)) {
                return Answer::Failed(format!("cannot reach the desktop helper: {e}"));
            }
            st.waiting.insert(id, (serial, tx));
        }
        match rx.recv_timeout(timeout) {
            Ok(Reply::Yes) => Answer::Approved,
            Ok(Reply::No) => Answer::Denied,
            Ok(Reply::Timeout) => Answer::TimedOut,
            Ok(Reply::Failed) => Answer::Failed("the desktop helper could not show the question".into()),
            Err(RecvTimeoutError::Disconnected) => Answer::Failed("the desktop helper went away".into()),
            Err(RecvTimeoutError::Timeout) => {
                let mut st = self.state();
                st.waiting.remove(&id);
                // Take the dialog off the screen: an answer now would count for nothing.
                if let Some((_, s)) = &st.helper {
                    let _ = (&*s).write_all(&ask_wire::encode(&ToHelper::Cancel { id }));
                }
                Answer::TimedOut
            }
        }
    }
}

/// The uid of a user name, or of a number; `None` for a name with no user.
pub fn lookup_uid(user: &str) -> anyhow::Result<Option<Uid>> {
    if let Ok(n) = user.parse::<u32>() {
        return Ok(Some(Uid::from_raw(n)));
    }
    Ok(nix::unistd::User::from_name(user)?.map(|u| u.uid))
}
