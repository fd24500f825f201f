//! gpg's command line as `qvault-gpg` parses it (`args::parse` over
//! `argv[1..]`): the caller (git, debsign, a user's script) controls every
//! word. The input is split on NUL bytes into words, each kept as raw bytes
//! (an OS string), exactly as argv arrives. Errors and results are formatted too, since
//! `qvault-gpg` prints them.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;

use libfuzzer_sys::fuzz_target;
use qvault_gpg::args;

fuzz_target!(|data: &[u8]| {
    let argv = data.split(|&b| b == 0).map(|w| OsStr::from_bytes(w).to_owned());
    match args::parse(argv) {
        Ok(inv) => {
            let _ = format!("{inv:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
});
