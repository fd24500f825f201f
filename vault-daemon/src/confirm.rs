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
    /// What the vault recognised in the data (`summary.rs`), if anything.
    pub summary: Option<&'a str>,
}

impl Question<'_> {
    pub fn message(&self) -> String {
        format!(
            "Qube '{}' asks the vault to make a {} signature\nwith key {}\n({})\nover {} bytes of data{}, {} {}.\n{}\nAllow?",
            self.caller,
            self.operation,
            self.key,
            self.userid,
            self.size,
            if self.client_hashed { " hashed by that qube (the vault has not seen them)" } else { "" },
            self.hash_algo,
            self.digest,
            self.summary.map(|s| format!("\nThe data is: {s}\n")).unwrap_or_default()
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
        assert!(!q().message().contains("The data is"));
        assert_eq!(ask(&cmd("test -z \"${QVAULT_SUMMARY+set}\"", 5), &q()), Answer::Approved);
        let s = Question { summary: Some("git commit: tree 00"), ..q() };
        assert!(s.message().contains("\nThe data is: git commit: tree 00\n"), "{}", s.message());
        assert_eq!(ask(&cmd("test \"$QVAULT_SUMMARY\" = \"git commit: tree 00\"", 5), &s), Answer::Approved);
    }
}
