//! Asking the person at the vault: runs the configured command (a zenity
//! question by default) with the request's details, and waits for its answer
//! up to a timeout. Exit status 0 approves; anything else, a failure to run, or
//! the timeout denies.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::policy::ConfirmCommand;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved,
    Denied,
    TimedOut,
    Failed(String),
}

pub struct Question<'a> {
    pub caller: &'a str,
    pub key: &'a str,
    pub userid: &'a str,
    pub operation: &'a str,
    pub size: u64,
    pub digest: &'a str,
    pub hash_algo: &'a str,
    /// The calling qube hashed the data (policy `client_hash`): the vault has
    /// not seen it, and size and digest are the caller's claims.
    pub client_hashed: bool,
    /// A short description of the data (what a commit or package says it
    /// is), when the vault has one; shown as the caller's words.
    pub summary: Option<&'a str>,
}

/// Longest summary shown, in characters.
const MAX_SUMMARY: usize = 400;

/// A summary as shown: control and bidirectional-override characters (which
/// could fake lines or reorder text) become spaces; cut to [`MAX_SUMMARY`].
fn shown_summary(s: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
    let mut out: String =
        s.chars().take(MAX_SUMMARY).map(|c| if c.is_control() || bidi(c) { ' ' } else { c }).collect();
    if s.chars().count() > MAX_SUMMARY {
        out.push('…');
    }
    out
}

impl Question<'_> {
    /// The dialog's title (also how a window manager lists it).
    pub fn title(&self) -> String {
        format!("qvault: qube {} asks for a signature", self.caller)
    }

    pub fn message(&self) -> String {
        let summary = match self.summary {
            Some(s) => format!("\n\nThe data, as that qube describes it:\n{}", shown_summary(s)),
            None => String::new(),
        };
        format!(
            "Qube '{}' asks the vault to make a {} signature\nwith key {}\n({})\nover {} bytes of data{}, {} {}.{summary}\n\nAllow?",
            self.caller,
            self.operation,
            self.key,
            self.userid,
            self.size,
            if self.client_hashed { " hashed by that qube (the vault has not seen them)" } else { "" },
            self.hash_algo,
            self.digest,
        )
    }
}

pub fn ask(cmd: &ConfirmCommand, q: &Question<'_>) -> Answer {
    let msg = q.message();
    let argv: Vec<String> = cmd.argv.iter().map(|a| a.replace("{message}", &msg)).collect();
    let mut command = Command::new(&argv[0]);
    if let Some(s) = q.summary {
        command.env("QVAULT_SUMMARY", s);
    } else {
        command.env_remove("QVAULT_SUMMARY");
    }
    let child = command
        .args(&argv[1..])
        .env("QVAULT_CALLER", q.caller)
        .env("QVAULT_KEY", q.key)
        .env("QVAULT_KEY_UID", q.userid)
        .env("QVAULT_OPERATION", q.operation)
        .env("QVAULT_DATA_SIZE", q.size.to_string())
        .env("QVAULT_DATA_DIGEST", format!("{}:{}", q.hash_algo, q.digest))
        .env("QVAULT_HASHED_BY", if q.client_hashed { "client" } else { "vault" })
        .env("QVAULT_MESSAGE", &msg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Answer::Failed(format!("cannot run {:?}: {e}", argv[0])),
    };
    let deadline = Instant::now() + cmd.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Answer::Approved,
            Ok(Some(_)) => return Answer::Denied,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Answer::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Answer::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Question<'static> {
        Question {
            caller: "work",
            key: "K",
            userid: "U",
            operation: "detached",
            size: 3,
            digest: "ab",
            hash_algo: "SHA256",
            client_hashed: false,
            summary: None,
        }
    }

    fn cmd(script: &str, secs: u64) -> ConfirmCommand {
        ConfirmCommand { argv: vec!["sh".into(), "-c".into(), script.into()], timeout: Duration::from_secs(secs) }
    }

    #[test]
    fn answers() {
        assert_eq!(ask(&cmd("exit 0", 5), &q()), Answer::Approved);
        assert_eq!(ask(&cmd("exit 1", 5), &q()), Answer::Denied);
        assert_eq!(ask(&cmd("sleep 10", 1), &q()), Answer::TimedOut);
        assert_eq!(ask(&cmd("test \"$QVAULT_CALLER/$QVAULT_DATA_SIZE\" = work/3", 5), &q()), Answer::Approved);
        let c = ConfirmCommand { argv: vec!["/nonexistent/zenity".into()], timeout: Duration::from_secs(1) };
        assert!(matches!(ask(&c, &q()), Answer::Failed(_)));
    }

    #[test]
    fn the_question_says_who_hashed_the_data() {
        assert!(!q().message().contains("hashed by"));
        assert_eq!(ask(&cmd("test \"$QVAULT_HASHED_BY\" = vault", 5), &q()), Answer::Approved);
        let c = Question { client_hashed: true, ..q() };
        assert!(
            c.message().contains("3 bytes of data hashed by that qube (the vault has not seen them)"),
            "{}",
            c.message()
        );
        assert_eq!(ask(&cmd("test \"$QVAULT_HASHED_BY\" = client", 5), &c), Answer::Approved);
    }

    #[test]
    fn the_question_shows_the_summary() {
        assert!(!q().message().contains("The data"));
        assert_eq!(ask(&cmd("test -z \"${QVAULT_SUMMARY+set}\"", 5), &q()), Answer::Approved);
        let s = Question { summary: Some("git commit: tree 00"), ..q() };
        assert!(
            s.message().contains("\nThe data, as that qube describes it:\ngit commit: tree 00\n"),
            "{}",
            s.message()
        );
        assert_eq!(ask(&cmd("test \"$QVAULT_SUMMARY\" = \"git commit: tree 00\"", 5), &s), Answer::Approved);
    }

    #[test]
    fn a_summary_is_shown_as_the_callers_words_and_defanged() {
        assert!(!q().message().contains("describes"));
        let evil = "Fix typo\nwith key 0000\u{202e}gnp.exe";
        let m = Question { summary: Some(evil), ..q() }.message();
        assert!(m.contains("The data, as that qube describes it:\nFix typo with key 0000 gnp.exe\n\nAllow?"), "{m}");
        let long = "x".repeat(1000);
        let m = Question { summary: Some(&long), ..q() }.message();
        assert!(m.contains(&format!("{}…", "x".repeat(MAX_SUMMARY))) && !m.contains(&"x".repeat(MAX_SUMMARY + 1)));
    }
}
