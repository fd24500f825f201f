//! The secret key never leaves the vault: after a scenario that exercises every
//! client command, including failures, the secret key's MPI bytes appear in no
//! output, no error and no file outside the vault's home.

use std::io::Read;
use std::path::Path;

use openpgp::crypto::mpi;
use openpgp::packet::key::SecretKeyMaterial;
use openpgp::parse::Parse;
use qvault_e2e::*;
use sequoia_openpgp as openpgp;

fn secret_mpis(tsk: &Path) -> Vec<Vec<u8>> {
    let cert = openpgp::Cert::from_file(tsk).unwrap();
    let mut out = Vec::new();
    for ka in cert.keys().secret() {
        let SecretKeyMaterial::Unencrypted(u) = ka.key().optional_secret().unwrap() else { panic!("encrypted") };
        u.map(|m| match m {
            mpi::SecretKeyMaterial::EdDSA { scalar } => out.push(scalar.value().to_vec()),
            mpi::SecretKeyMaterial::RSA { d, p, q, u } => {
                for x in [d, p, q, u] {
                    out.push(x.value().to_vec());
                }
            }
            other => panic!("unexpected key type {other:?}"),
        });
    }
    assert!(!out.is_empty());
    out
}

/// All forms a leaked secret could take in a blob.
fn contains_secret(blob: &[u8], secrets: &[Vec<u8>]) -> Option<String> {
    let mut views = vec![blob.to_vec()];
    // Armored data is searched after decoding too.
    let mut r = openpgp::armor::Reader::from_bytes(blob, openpgp::armor::ReaderMode::Tolerant(None));
    let mut dearmored = Vec::new();
    if r.read_to_end(&mut dearmored).is_ok() && !dearmored.is_empty() {
        views.push(dearmored);
    }
    for s in secrets {
        // Long enough that a chance match is impossible.
        let needle = &s[..s.len().min(24)];
        let hex_l = hex_of(needle, false);
        let hex_u = hex_of(needle, true);
        for v in &views {
            if v.windows(needle.len()).any(|w| w == needle)
                || v.windows(hex_l.len()).any(|w| w == hex_l.as_bytes() || w == hex_u.as_bytes())
            {
                return Some(hex_l);
            }
        }
    }
    None
}

fn hex_of(b: &[u8], upper: bool) -> String {
    b.iter().map(|x| if upper { format!("{x:02X}") } else { format!("{x:02x}") }).collect()
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

#[test]
fn secret_key_material_appears_in_no_output_or_client_file() {
    for (uid, algo) in [(ALICE, "ed25519"), ("Bob RSA <bob@example.org>", "rsa3072")] {
        let mut w = World::with_key(uid, algo);
        let secrets = secret_mpis(&w.key_file());
        let data = w.path("data.txt");
        std::fs::write(&data, b"some data\n").unwrap();
        let mut outputs = Vec::new();
        let d = data.to_str().unwrap().to_owned();
        let scenarios: Vec<Vec<&str>> = vec![
            vec!["-bsa", "--status-fd=2"],
            vec!["-b"],
            vec!["--clearsign"],
            vec!["-sa"],
            vec!["-s"],
            vec!["-K", "--with-colons"],
            vec!["-k"],
            vec!["-K", "--keyid-format", "long", "--with-fingerprint", "--with-fingerprint"],
            vec!["--export"],
            vec!["--export", "-a"],
            vec!["--export-secret-keys", "-a"],
            vec!["--export-secret-subkeys"],
            vec!["-bsau", "nobody"],
            vec!["--version"],
            vec!["--verify", "/nonexistent.sig", "-"],
        ];
        for serve in [false, true] {
            if serve {
                w.serve();
            }
            for s in &scenarios {
                let o = run_with_input(&mut w.shim(s), b"some data\n");
                outputs.push((format!("{s:?}"), o.stdout));
                outputs.push((format!("{s:?} stderr"), o.stderr));
            }
            let sig = w.path("data.sig");
            let o = run(&mut w.shim(&["-b", "--yes", "-o", sig.to_str().unwrap(), &d]));
            assert_ok(&o);
            let o = run(&mut w.shim(&["--verify", sig.to_str().unwrap(), &d]));
            outputs.push(("verify".into(), o.stderr));
        }
        for (name, blob) in &outputs {
            assert_eq!(contains_secret(blob, &secrets), None, "secret found in output of {name}");
        }
        let mut files = Vec::new();
        files_under(w.dir.path(), &mut files);
        let vault = w.vault_home.clone();
        let mut checked = 0;
        // The real qrexec bed's own files (sockets, Qubes' binaries, the link
        // to qvault) are not the client's; its logs (the vault's too) are read.
        let bed = w.path("bed");
        let ours = |f: &&std::path::PathBuf| {
            !f.starts_with(&vault)
                && !f.ends_with("qvault.sock")
                && !f.ends_with("qvault-bin")
                && (!f.starts_with(&bed) || f.starts_with(bed.join("logs")))
                && std::fs::symlink_metadata(f).is_ok_and(|m| m.is_file())
        };
        for f in files.iter().filter(ours) {
            let blob = std::fs::read(f).unwrap_or_default();
            assert_eq!(contains_secret(&blob, &secrets), None, "secret found in {}", f.display());
            checked += 1;
        }
        assert!(checked >= 3, "the sweep looked at the client's files ({checked})");
        // The sweep itself can find a secret: the vault's own key file has it.
        assert!(contains_secret(&std::fs::read(w.key_file()).unwrap(), &secrets).is_some());
    }
}
