//! Per-caller state that policy decisions need between calls: signatures in the
//! last minute (rate limits), answers still inside their auto-accept window,
//! and the one question allowed to be pending per caller. In memory under
//! `qvault serve`; in `state/gate.json` (under a lock) in exec-service mode,
//! where every call is a new process.
//!
//! An answer is kept under (caller, key, rule identity): a "yes" given under
//! one rule never lets another rule, or an edited version of the same rule,
//! skip its question; a "no" is kept as long, so a tool retrying in a loop is
//! refused without asking again.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::confirm::Answer;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::fsutil;

#[derive(Default, Serialize, Deserialize)]
struct GateState {
    /// "<rule line>/<caller>" -> signing times (seconds) in the last minute.
    recent: HashMap<String, Vec<i64>>,
    /// "<caller>/<key fingerprint>/<rule id>" -> auto-accept window end (seconds).
    approved: HashMap<String, i64>,
    /// The same for a remembered "no".
    #[serde(default)]
    refused: HashMap<String, i64>,
}

/// Seconds since the epoch; injectable so windows are tested without waiting.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct Gate {
    dir: Option<PathBuf>,
    mem: Mutex<GateState>,
    pending: Arc<Mutex<HashSet<String>>>,
    now: Clock,
}

/// How a question under an `ask` rule was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// A "yes" under this rule is still inside its window: not asked.
    AutoAccepted,
    /// A "no" under this rule is still inside its window: not asked.
    RememberedNo,
    /// Another question for this caller is on screen.
    Pending,
    /// Asked now.
    Asked(Answer),
}

/// Held while a question is pending for a caller.
pub enum Pending {
    Mem(Arc<Mutex<HashSet<String>>>, String),
    File(#[allow(dead_code)] Flock<File>),
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Pending::Mem(set, caller) = self {
            set.lock().unwrap_or_else(|p| p.into_inner()).remove(caller);
        }
    }
}

fn system_clock() -> Clock {
    Arc::new(crate::clock::now_secs)
}

fn answer_key(caller: &str, fpr: &str, rule_id: &str) -> String {
    format!("{caller}/{fpr}/{rule_id}")
}

impl GateState {
    fn expire(&mut self, t: i64) {
        self.recent.retain(|_, v| {
            v.retain(|&x| x > t - 60);
            !v.is_empty()
        });
        self.approved.retain(|_, &mut until| until > t);
        self.refused.retain(|_, &mut until| until > t);
    }
}

impl Gate {
    pub fn in_memory() -> Gate {
        Gate::in_memory_with_clock(system_clock())
    }

    pub fn in_memory_with_clock(now: Clock) -> Gate {
        Gate { dir: None, mem: Mutex::new(GateState::default()), pending: Arc::default(), now }
    }

    pub fn on_disk(dir: PathBuf) -> std::io::Result<Gate> {
        Gate::on_disk_with_clock(dir, system_clock())
    }

    pub fn on_disk_with_clock(dir: PathBuf, now: Clock) -> std::io::Result<Gate> {
        fsutil::ensure_private_dir(&dir)?;
        Ok(Gate { dir: Some(dir), mem: Mutex::new(GateState::default()), pending: Arc::default(), now })
    }

    fn now(&self) -> i64 {
        (self.now)()
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut GateState) -> R) -> std::io::Result<R> {
        let t = self.now();
        let Some(dir) = &self.dir else {
            let mut st = self.mem.lock().unwrap_or_else(|p| p.into_inner());
            let r = f(&mut st);
            st.expire(t);
            return Ok(r);
        };
        let lock =
            OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(dir.join("gate.lock"))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
        let path = dir.join("gate.json");
        let mut st: GateState =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let r = f(&mut st);
        st.expire(t);
        fsutil::write_private(&path, &serde_json::to_vec(&st).unwrap_or_default())?;
        Ok(r)
    }

    /// Counts a signature against `limit` per minute; false when over.
    pub fn rate_ok(&self, rule_line: usize, caller: &str, limit: u32) -> std::io::Result<bool> {
        let key = format!("{rule_line}/{caller}");
        let t = self.now();
        self.with_state(|st| {
            let v = st.recent.entry(key).or_default();
            v.retain(|&x| x > t - 60);
            if v.len() >= limit as usize {
                false
            } else {
                v.push(t);
                true
            }
        })
    }

    /// Settles a question under the rule `rule_id` (with auto-accept `window`):
    /// from a remembered answer, or by `ask`ing while holding the caller's
    /// pending-question slot. A "yes" or a "no" is remembered for `window`.
    pub fn confirm(
        &self,
        caller: &str,
        fpr: &str,
        rule_id: &str,
        window: Option<Duration>,
        ask: impl FnOnce() -> Answer,
    ) -> std::io::Result<Confirmation> {
        let key = answer_key(caller, fpr, rule_id);
        let t = self.now();
        let known = self.with_state(|st| {
            if st.approved.get(&key).is_some_and(|&until| until > t) {
                Some(Confirmation::AutoAccepted)
            } else if st.refused.get(&key).is_some_and(|&until| until > t) {
                Some(Confirmation::RememberedNo)
            } else {
                None
            }
        })?;
        if let Some(k) = known {
            return Ok(k);
        }
        let Some(_pending) = self.begin_question(caller)? else { return Ok(Confirmation::Pending) };
        let answer = ask();
        if let Some(w) = window {
            // The window starts when the answer is given, not when asked.
            let until = self.now().saturating_add(w.as_secs().min(i64::MAX as u64) as i64);
            self.with_state(|st| match answer {
                Answer::Approved => {
                    st.refused.remove(&key);
                    st.approved.insert(key, until);
                }
                Answer::Denied => {
                    st.approved.remove(&key);
                    st.refused.insert(key, until);
                }
                // Nobody answered, or the question could not be shown: not an answer.
                Answer::TimedOut | Answer::Failed(_) => {}
            })?;
        }
        Ok(Confirmation::Asked(answer))
    }

    /// Claims the caller's single pending-question slot; `None` if taken.
    pub fn begin_question(&self, caller: &str) -> std::io::Result<Option<Pending>> {
        match &self.dir {
            None => {
                let mut set = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if !set.insert(caller.to_owned()) {
                    return Ok(None);
                }
                Ok(Some(Pending::Mem(self.pending.clone(), caller.to_owned())))
            }
            Some(dir) => {
                // Caller names are validated qube names: safe in a file name.
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(dir.join(format!("ask-{caller}.lock")))?;
                match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    Ok(l) => Ok(Some(Pending::File(l))),
                    Err(_) => Ok(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn clocked(d: &tempfile::TempDir) -> (Arc<AtomicI64>, [Gate; 2]) {
        let t = Arc::new(AtomicI64::new(1_000_000));
        let t2 = t.clone();
        let clock: Clock = Arc::new(move || t2.load(Ordering::SeqCst));
        let gates = [
            Gate::in_memory_with_clock(clock.clone()),
            Gate::on_disk_with_clock(d.path().join("state"), clock).unwrap(),
        ];
        (t, gates)
    }

    /// Confirms and counts the questions asked.
    fn confirm(g: &Gate, asked: &mut u32, fpr: &str, rule: &str, answer: Answer) -> Confirmation {
        g.confirm("work", fpr, rule, Some(Duration::from_secs(60)), || {
            *asked += 1;
            answer
        })
        .unwrap()
    }

    #[test]
    fn rate_limit_and_pending_in_memory_and_on_disk() {
        let d = tempfile::tempdir().unwrap();
        for g in [Gate::in_memory(), Gate::on_disk(d.path().join("state")).unwrap()] {
            assert!(g.rate_ok(3, "work", 2).unwrap());
            assert!(g.rate_ok(3, "work", 2).unwrap());
            assert!(!g.rate_ok(3, "work", 2).unwrap());
            assert!(g.rate_ok(3, "other", 2).unwrap());
            let p = g.begin_question("work").unwrap();
            assert!(p.is_some());
            assert!(g.begin_question("other").unwrap().is_some());
            drop(p);
            assert!(g.begin_question("work").unwrap().is_some());
        }
    }

    #[test]
    fn a_yes_is_kept_per_caller_key_and_rule_until_its_window_ends() {
        let d = tempfile::tempdir().unwrap();
        let (t, gates) = clocked(&d);
        for g in gates {
            let mut asked = 0;
            let yes = Confirmation::Asked(Answer::Approved);
            assert_eq!(confirm(&g, &mut asked, "F", "0:aa", Answer::Approved), yes);
            assert_eq!(confirm(&g, &mut asked, "F", "0:aa", Answer::Approved), Confirmation::AutoAccepted);
            assert_eq!(asked, 1);
            // Another rule, the same rule edited, another key, another caller: asked.
            assert_eq!(confirm(&g, &mut asked, "F", "1:bb", Answer::Approved), yes);
            assert_eq!(confirm(&g, &mut asked, "F", "0:ab", Answer::Approved), yes);
            assert_eq!(confirm(&g, &mut asked, "G", "0:aa", Answer::Approved), yes);
            assert_eq!(asked, 4);
            let other = g.confirm("other", "F", "0:aa", None, || Answer::Approved).unwrap();
            assert_eq!(other, yes);
            // The window ends 60 s after the answer.
            t.fetch_add(59, Ordering::SeqCst);
            assert_eq!(confirm(&g, &mut asked, "F", "0:aa", Answer::Approved), Confirmation::AutoAccepted);
            t.fetch_add(1, Ordering::SeqCst);
            assert_eq!(confirm(&g, &mut asked, "F", "0:aa", Answer::Approved), yes);
            assert_eq!(asked, 5);
        }
    }

    #[test]
    fn a_no_is_remembered_as_long_and_a_timeout_is_not() {
        let d = tempfile::tempdir().unwrap();
        let (t, gates) = clocked(&d);
        for g in gates {
            let mut asked = 0;
            assert_eq!(confirm(&g, &mut asked, "F", "0:aa", Answer::Denied), Confirmation::Asked(Answer::Denied));
            assert_eq!(confirm(&g, &mut asked, "F", "0:aa", Answer::Approved), Confirmation::RememberedNo);
            assert_eq!(asked, 1);
            // Only under that rule.
            let yes = Confirmation::Asked(Answer::Approved);
            assert_eq!(confirm(&g, &mut asked, "F", "1:bb", Answer::Approved), yes);
            t.fetch_add(60, Ordering::SeqCst);
            assert_eq!(confirm(&g, &mut asked, "F", "0:aa", Answer::Approved), yes);
            assert_eq!(asked, 3);
            // Nobody answering is not a "no"; without a window nothing is kept.
            assert_eq!(confirm(&g, &mut asked, "H", "0:aa", Answer::TimedOut), Confirmation::Asked(Answer::TimedOut));
            assert_eq!(confirm(&g, &mut asked, "H", "0:aa", Answer::Approved), yes);
            let none = |a: Answer| g.confirm("work", "J", "0:aa", None, || a).unwrap();
            assert_eq!(none(Answer::Denied), Confirmation::Asked(Answer::Denied));
            assert_eq!(none(Answer::Approved), yes);
        }
    }

    #[test]
    fn one_pending_question_per_caller() {
        let g = Gate::in_memory();
        let held = g.begin_question("work").unwrap();
        assert!(held.is_some());
        assert!(g.begin_question("work").unwrap().is_none());
        let c = g.confirm("work", "F", "0:aa", None, || Answer::Approved).unwrap();
        assert_eq!(c, Confirmation::Pending);
    }
}
