//! A native stand-in for the simulated `qrexec-client-vm` in socket mode, to
//! separate the cost of the test simulator (a Python process) from qvault's
//! own. It does what `tests/qrexec-sim/qrexec-client-vm` does with
//! `QVAULT_SIM_SOCKET`: connect to the daemon's socket, write the descriptor
//! `<service> <source>\0`, then copy stdin to the socket and the socket to
//! stdout. The real `qrexec-client-vm` is a C program; this is closer to its
//! cost than the Python simulator is. `scripts/bench` puts it on PATH under the
//! name `qrexec-client-vm` in a directory of its own.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [_target, service] = args.as_slice() else {
        eprintln!("usage: qrexec-client-vm TARGET SERVICE");
        return ExitCode::from(2);
    };
    let Some(path) = std::env::var_os("QVAULT_SIM_SOCKET") else {
        eprintln!("qrexec-client-vm (native sim): only socket mode: set QVAULT_SIM_SOCKET");
        return ExitCode::from(1);
    };
    let source = std::env::var("QVAULT_SIM_SOURCE").unwrap_or_else(|_| "work".into());
    let sock = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("qrexec-client-vm (native sim): cannot connect to {}: {e}", path.to_string_lossy());
            return ExitCode::from(1);
        }
    };
    let mut desc = format!("{service} {source}").into_bytes();
    desc.push(0);
    if (&sock).write_all(&desc).is_err() {
        return ExitCode::from(1);
    }
    let Ok(up) = sock.try_clone() else { return ExitCode::from(1) };
    let pump = std::thread::spawn(move || {
        let _ = pipe(&mut std::io::stdin().lock(), &mut &up);
        let _ = up.shutdown(Shutdown::Write);
    });
    let res = pipe(&mut &sock, &mut std::io::stdout().lock());
    drop(pump);
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qrexec-client-vm (native sim): {e}");
            ExitCode::from(1)
        }
    }
}

/// Copies until end of stream with plain reads and writes (one buffer).
fn pipe(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return w.flush(),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        w.flush()?;
    }
}
