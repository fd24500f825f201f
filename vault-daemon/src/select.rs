//! gpg's key specifiers (`-u`, `--default-key`, listing patterns), as GnuPG matches
//! them (gpg manual, "How to specify a user ID"), for the forms that make sense in
//! a vault: key IDs and fingerprints (optional `0x`, `!` for an exact subkey),
//! `=exact user ID`, `<exact email>`, `@part-of-email`, `*substring` and plain
//! case-insensitive substrings.

/// A parsed specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// Hex key ID (8 or 16 digits) or fingerprint (40 or 64 digits), upper-case.
    KeyId {
        hex: String,
        exact: bool,
    },
    ExactUid(String),
    Email(String),
    EmailPart(String),
    Substring(String),
}

impl Spec {
    pub fn parse(s: &str) -> Spec {
        let t = s.trim();
        let (body, exact) = match t.strip_suffix('!') {
            Some(b) => (b, true),
            None => (t, false),
        };
        let hex = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")).unwrap_or(body);
        if matches!(hex.len(), 8 | 16 | 40 | 64) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Spec::KeyId { hex: hex.to_ascii_uppercase(), exact };
        }
        if let Some(rest) = t.strip_prefix('=') {
            return Spec::ExactUid(rest.to_owned());
        }
        if t.starts_with('<') {
            let inner = t.trim_start_matches('<').trim_end_matches('>');
            return Spec::Email(inner.to_ascii_lowercase());
        }
        if let Some(rest) = t.strip_prefix('@') {
            return Spec::EmailPart(rest.to_ascii_lowercase());
        }
        if let Some(rest) = t.strip_prefix('*') {
            return Spec::Substring(rest.to_lowercase());
        }
        Spec::Substring(t.to_lowercase())
    }

    /// Does this key (fingerprint, upper-case hex) match a key-ID spec?
    pub fn matches_key(&self, fpr: &str) -> bool {
        match self {
            Spec::KeyId { hex, .. } => match hex.len() {
                // v4 key IDs are the low 64 bits of the fingerprint.
                8 | 16 => fpr.len() == 40 && fpr.ends_with(hex.as_str()),
                _ => fpr == hex,
            },
            _ => false,
        }
    }

    pub fn matches_uid(&self, uid: &str) -> bool {
        match self {
            Spec::KeyId { .. } => false,
            Spec::ExactUid(u) => uid == u,
            Spec::Email(e) => email_of(uid).is_some_and(|m| m.eq_ignore_ascii_case(e)),
            Spec::EmailPart(p) => email_of(uid).is_some_and(|m| m.to_ascii_lowercase().contains(p.as_str())),
            Spec::Substring(s) => uid.to_lowercase().contains(s.as_str()),
        }
    }
}

/// The part of a user ID between the last `<` and the following `>`, or the whole
/// user ID when it is a bare address.
pub fn email_of(uid: &str) -> Option<&str> {
    if let Some(start) = uid.rfind('<') {
        let rest = &uid[start + 1..];
        return rest.find('>').map(|end| &rest[..end]);
    }
    (uid.contains('@') && !uid.contains(' ')).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPR: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    #[test]
    fn key_ids_and_fingerprints() {
        assert!(Spec::parse("0x89ABCDEF01234567").matches_key(FPR));
        assert!(Spec::parse("89abcdef01234567").matches_key(FPR));
        assert!(Spec::parse("01234567").matches_key(FPR));
        assert!(Spec::parse(FPR).matches_key(FPR));
        assert!(Spec::parse(&format!("{FPR}!")).matches_key(FPR));
        assert_eq!(Spec::parse(&format!("{FPR}!")), Spec::KeyId { hex: FPR.into(), exact: true });
        assert!(!Spec::parse("89ABCDEF01234568").matches_key(FPR));
        assert!(!Spec::parse("0123456789ABCDEF").matches_key(FPR));
    }

    #[test]
    fn user_id_forms() {
        let uid = "Alice Volunteer <alice@example.org>";
        assert!(Spec::parse("alice").matches_uid(uid));
        assert!(Spec::parse("Alice Volunteer <alice@example.org>").matches_uid(uid));
        assert!(Spec::parse("<ALICE@example.org>").matches_uid(uid));
        assert!(!Spec::parse("<alice@example>").matches_uid(uid));
        assert!(Spec::parse("@example.org").matches_uid(uid));
        assert!(Spec::parse("=Alice Volunteer <alice@example.org>").matches_uid(uid));
        assert!(!Spec::parse("=alice volunteer <alice@example.org>").matches_uid(uid));
        assert!(!Spec::parse("bob").matches_uid(uid));
        assert!(!Spec::parse("alice").matches_key(FPR));
    }
}
