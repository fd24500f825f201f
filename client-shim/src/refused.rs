//! gpg options qvault-gpg refuses by name, each with the reason a user sees. An
//! option here is never passed on: requests are typed values, and these would
//! read or write local files, run programs, touch keyrings, handle secret keys or
//! reach the network. Options in neither this table nor `args::OPTIONS` are
//! "invalid", as gpg says of options it does not know.

/// Why an option is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Files,
    Programs,
    Keyring,
    Secret,
    Network,
    Unsupported,
}

impl Reason {
    pub fn explain(self) -> &'static str {
        match self {
            Reason::Files => "it reads or writes local files or file descriptors that qvault-gpg does not manage",
            Reason::Programs => "it runs or loads programs",
            Reason::Keyring => "it selects or changes a local keyring or trust database; keys live in the vault",
            Reason::Secret => "it creates, exports or changes secret keys; secret keys never leave the vault",
            Reason::Network => "it reaches the network",
            Reason::Unsupported => "qvault-gpg only signs, verifies, lists and exports public keys",
        }
    }
}

/// (long option name, takes an argument, reason).
pub const REFUSED: &[(&str, bool, Reason)] = &[
    // Files and descriptors.
    ("options", true, Reason::Files),
    ("no-options", false, Reason::Files),
    ("passphrase-file", true, Reason::Files),
    ("passphrase-fd", true, Reason::Files),
    ("passphrase", true, Reason::Secret),
    ("passphrase-repeat", true, Reason::Secret),
    ("command-file", true, Reason::Files),
    ("status-file", true, Reason::Files),
    ("logger-file", true, Reason::Files),
    ("log-file", true, Reason::Files),
    ("attribute-fd", true, Reason::Files),
    ("attribute-file", true, Reason::Files),
    ("override-session-key-fd", true, Reason::Files),
    ("for-your-eyes-only", false, Reason::Unsupported),
    ("use-embedded-filename", false, Reason::Files),
    ("multifile", false, Reason::Files),
    ("tofu-db-format", true, Reason::Files),
    ("debug-level", true, Reason::Unsupported),
    ("debug", true, Reason::Unsupported),
    ("debug-all", false, Reason::Unsupported),
    ("debug-iolbf", false, Reason::Unsupported),
    ("faked-system-time", true, Reason::Unsupported),
    ("dry-run", false, Reason::Unsupported),
    // Programs.
    ("load-extension", true, Reason::Programs),
    ("exec-path", true, Reason::Programs),
    ("photo-viewer", true, Reason::Programs),
    ("agent-program", true, Reason::Programs),
    ("dirmngr-program", true, Reason::Programs),
    ("keyserver-options", true, Reason::Network),
    ("pinentry-program", true, Reason::Programs),
    ("exec", false, Reason::Programs),
    ("list-packets", false, Reason::Unsupported),
    ("gpgconf-list", false, Reason::Unsupported),
    ("gpgconf-test", false, Reason::Unsupported),
    // Keyrings and trust.
    ("keyring", true, Reason::Keyring),
    ("primary-keyring", true, Reason::Keyring),
    ("secret-keyring", true, Reason::Keyring),
    ("no-default-keyring", false, Reason::Keyring),
    ("trustdb-name", true, Reason::Keyring),
    ("no-keyring", false, Reason::Keyring),
    ("import-ownertrust", false, Reason::Keyring),
    ("export-ownertrust", false, Reason::Keyring),
    ("update-trustdb", false, Reason::Keyring),
    ("check-trustdb", false, Reason::Keyring),
    ("fix-trustdb", false, Reason::Keyring),
    ("trusted-key", true, Reason::Keyring),
    ("delete-keys", false, Reason::Keyring),
    ("delete-key", false, Reason::Keyring),
    ("delete-secret-keys", false, Reason::Secret),
    ("delete-secret-key", false, Reason::Secret),
    ("delete-secret-and-public-key", false, Reason::Secret),
    ("sign-key", true, Reason::Keyring),
    ("lsign-key", true, Reason::Keyring),
    ("quick-sign-key", true, Reason::Keyring),
    ("quick-lsign-key", true, Reason::Keyring),
    ("edit-key", false, Reason::Keyring),
    ("tofu-policy", true, Reason::Keyring),
    ("rebuild-keydb-caches", false, Reason::Keyring),
    ("import-options", true, Reason::Keyring),
    ("export-options", true, Reason::Keyring),
    ("keyid-format-file", true, Reason::Files),
    ("auto-key-locate", true, Reason::Network),
    ("auto-key-retrieve", false, Reason::Network),
    ("auto-key-import", false, Reason::Keyring),
    // Secret keys.
    ("export-secret-keys", false, Reason::Secret),
    ("export-secret-subkeys", false, Reason::Secret),
    ("export-secret-key", false, Reason::Secret),
    ("export-ssh-key", false, Reason::Secret),
    ("gen-key", false, Reason::Secret),
    ("generate-key", false, Reason::Secret),
    ("full-gen-key", false, Reason::Secret),
    ("full-generate-key", false, Reason::Secret),
    ("quick-gen-key", false, Reason::Secret),
    ("quick-generate-key", false, Reason::Secret),
    ("quick-add-key", false, Reason::Secret),
    ("quick-add-uid", false, Reason::Secret),
    ("quick-revoke-uid", false, Reason::Secret),
    ("quick-set-expire", false, Reason::Secret),
    ("quick-set-primary-uid", false, Reason::Secret),
    ("gen-revoke", false, Reason::Secret),
    ("generate-revocation", false, Reason::Secret),
    ("desig-revoke", false, Reason::Secret),
    ("generate-designated-revocation", false, Reason::Secret),
    ("change-passphrase", false, Reason::Secret),
    ("passwd", false, Reason::Secret),
    ("card-edit", false, Reason::Secret),
    ("edit-card", false, Reason::Secret),
    ("card-status", false, Reason::Secret),
    ("change-pin", false, Reason::Secret),
    ("allow-secret-key-import", false, Reason::Secret),
    ("import-secret-keys", false, Reason::Secret),
    ("show-session-key", false, Reason::Secret),
    ("override-session-key", true, Reason::Secret),
    ("symmetric", false, Reason::Unsupported),
    ("gen-random", false, Reason::Unsupported),
    ("gen-prime", false, Reason::Unsupported),
    // Network.
    ("keyserver", true, Reason::Network),
    ("recv-keys", false, Reason::Network),
    ("receive-keys", false, Reason::Network),
    ("send-keys", false, Reason::Network),
    ("search-keys", false, Reason::Network),
    ("refresh-keys", false, Reason::Network),
    ("fetch-keys", false, Reason::Network),
    ("locate-keys", false, Reason::Network),
    ("locate-external-keys", false, Reason::Network),
    ("sender", true, Reason::Unsupported),
    // Not a signing operation.
    ("encrypt", false, Reason::Unsupported),
    ("decrypt", false, Reason::Unsupported),
    ("decrypt-files", false, Reason::Files),
    ("encrypt-files", false, Reason::Files),
    ("verify-files", false, Reason::Files),
    ("recipient", true, Reason::Unsupported),
    ("hidden-recipient", true, Reason::Unsupported),
    ("encrypt-to", true, Reason::Unsupported),
    ("store", false, Reason::Unsupported),
    ("sign-with", true, Reason::Unsupported),
    ("throw-keyids", false, Reason::Unsupported),
    ("set-notation", true, Reason::Unsupported),
    ("sig-notation", true, Reason::Unsupported),
    ("sig-policy-url", true, Reason::Unsupported),
    ("sig-keyserver-url", true, Reason::Unsupported),
    ("print-md", false, Reason::Unsupported),
    ("print-mds", false, Reason::Unsupported),
    ("dearmor", false, Reason::Unsupported),
    ("enarmor", false, Reason::Unsupported),
    ("list-sigs", false, Reason::Unsupported),
    ("check-sigs", false, Reason::Unsupported),
];

/// The short-option letters of refused options.
pub const REFUSED_SHORT: &[(char, &str)] =
    &[('e', "encrypt"), ('d', "decrypt"), ('r', "recipient"), ('c', "symmetric"), ('n', "dry-run")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_large_and_names_are_valid() {
        assert!(REFUSED.len() >= 100, "{}", REFUSED.len());
        for (name, _, _) in REFUSED {
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{name}");
        }
        for (_, long) in REFUSED_SHORT {
            assert!(REFUSED.iter().any(|(n, _, _)| n == long), "{long}");
        }
    }
}
