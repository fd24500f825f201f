//! gpg's command line as `qvault-gpg` parses it (`args::parse` over
//! `argv[1..]`): the caller (git, debsign, a user's script) controls every
//! word. The input is split on NUL bytes into words, each decoded as lossy
//! UTF-8, exactly as argv arrives. Errors and results are formatted too, since
//! `qvault-gpg` prints them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qvault_gpg::args;

fuzz_target!(|data: &[u8]| {
    let argv = data.split(|&b| b == 0).map(|w| String::from_utf8_lossy(w).into_owned());
    match args::parse(argv) {
        Ok(inv) => {
            let _ = format!("{inv:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
});
