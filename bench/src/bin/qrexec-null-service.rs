//! `qrexec-null-service`: the floor of `scripts/bench`'s real-qrexec mode. A
//! qrexec socket service that does no work: for each connection it reads the
//! header the agent writes (`SERVICE+ARG SOURCE\0`), reads the caller's data
//! to its end, discards it, answers `ok <bytes>\n` and closes. A call to it
//! costs what any socket service pays for the transport (process starts of
//! qrexec-client-vm, dom0's policy decision, the vchan data path) and nothing
//! else, so qvault's and split-gpg's times can be read against it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;

/// The agent's header is short; anything longer is not a qrexec header.
const MAX_HEADER: usize = 1024;

fn serve(mut conn: UnixStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut header_done = false;
    let mut header_len = 0usize;
    let mut data = 0u64;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if !header_done {
            match chunk.iter().position(|&b| b == 0) {
                Some(end) => {
                    header_done = true;
                    chunk = &chunk[end + 1..];
                }
                None => {
                    header_len += n;
                    if header_len > MAX_HEADER {
                        return Err(std::io::Error::other("no qrexec header"));
                    }
                    continue;
                }
            }
        }
        data += chunk.len() as u64;
    }
    conn.write_all(format!("ok {data}\n").as_bytes())
}

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: qrexec-null-service SOCKET");
        return ExitCode::from(2);
    };
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("qrexec-null-service: cannot bind {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            if let Err(e) = serve(conn) {
                eprintln!("qrexec-null-service: {e}");
            }
        });
    }
    ExitCode::SUCCESS
}
