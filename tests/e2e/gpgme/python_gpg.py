# python3-gpg (GPGME 1.18) through qvault: run by tests/e2e/gpgme.rs with
# qvault's gpgconf first on PATH. Argument: the output directory, the vault
# key's fingerprint. Writes each signature it makes there and checks GPGME's
# own view of keys, signing results and verification.
import os
import sys

import gpg

out, fpr = sys.argv[1], sys.argv[2]
data = b"signed by python3-gpg through qvault\n- a line with a dash\n"
open(os.path.join(out, "data"), "wb").write(data)

c = gpg.Context()
engine = c.engine_info
assert engine.file_name.endswith("qvault-gpg"), engine.file_name
print("engine", engine.file_name, engine.version)

secret = list(c.keylist(secret=True))
assert [k.fpr for k in secret] == [fpr], [k.fpr for k in secret]
assert secret[0].secret and secret[0].can_sign, "the vault's key is a secret signing key"
public = list(c.keylist(fpr))
assert [k.fpr for k in public] == [fpr]
assert public[0].uids[0].uid == "Alice Volunteer <alice@example.org>", public[0].uids[0].uid
# GPGME adds --with-secret and --with-keygrip here; keygrips stay unset (no agent on this side).
mode = gpg.constants.keylist.mode.LOCAL | gpg.constants.keylist.mode.WITH_SECRET
assert [(k.secret, k.subkeys[0].secret) for k in c.keylist(fpr, mode=mode)] == [(1, 1)]

# The key that signs (a subkey: the vault's keys certify with the primary),
# as GPGME reports it from SIG_CREATED and VALIDSIG.
signing = [k.fpr for k in secret[0].subkeys if k.can_sign]
assert len(signing) == 1, signing
c.signers = secret
modes = [
    ("detached.asc", gpg.constants.sig.mode.DETACH, True),
    ("detached.sig", gpg.constants.sig.mode.DETACH, False),
    ("normal.asc", gpg.constants.sig.mode.NORMAL, True),
    ("normal.gpg", gpg.constants.sig.mode.NORMAL, False),
    ("clear.asc", gpg.constants.sig.mode.CLEAR, True),
]
for name, mode, armor in modes:
    c.armor = armor
    signed, result = c.sign(data, mode=mode)
    assert not result.invalid_signers, result.invalid_signers
    assert [s.fpr for s in result.signatures] == signing, (name, [s.fpr for s in result.signatures])
    open(os.path.join(out, name), "wb").write(signed)
    print("signed", name, len(signed))

# Text mode (gpgme_set_textmode): a canonical-text signature, class 01.
c.armor, c.textmode = True, True
signed, result = c.sign(data, mode=gpg.constants.sig.mode.DETACH)
assert result.signatures[0].sig_class == 1, result.signatures[0].sig_class
open(os.path.join(out, "text.asc"), "wb").write(signed)
c.textmode = False

# The public key, as GPGME exports it (armored).
exported = c.key_export(fpr)
assert exported and exported.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"), exported
open(os.path.join(out, "key.asc"), "wb").write(exported)

for name in ("detached.asc", "detached.sig", "text.asc"):
    sig = open(os.path.join(out, name), "rb").read()
    _, result = c.verify(data, signature=sig)
    s = result.signatures[0]
    assert [s.fpr] == signing and s.status == 0 and s.summary & gpg.constants.sigsum.VALID, (name, s.fpr, s.status, s.summary)
    print("verified", name)
for name in ("normal.asc", "normal.gpg", "clear.asc"):
    signed = open(os.path.join(out, name), "rb").read()
    got, result = c.verify(signed)
    s = result.signatures[0]
    assert [s.fpr] == signing and s.status == 0 and s.summary & gpg.constants.sigsum.VALID, (name, s.fpr, s.status, s.summary)
    assert got == data, (name, got)
    print("verified", name)

# A changed text is a bad signature to GPGME, not an error.
sig = open(os.path.join(out, "detached.sig"), "rb").read()
try:
    c.verify(data + b"x", signature=sig)
    raise AssertionError("a changed text verified")
except gpg.errors.BadSignatures as e:
    s = e.result.signatures[0]
    assert s.status != 0 and not s.summary & gpg.constants.sigsum.VALID, (s.status, s.summary)
print("rejected a changed text")
