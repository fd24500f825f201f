import gpg, sys, os
out = {}
def mark(s):
    with open(os.environ["GPGREC_LOG"], "a") as f: f.write(f"### {s}\n")
c = gpg.Context()
mark("engine info")
print(gpg.core.get_engine_info()[0].file_name if False else c.engine_info.file_name, c.engine_info.version)
mark("keylist secret"); keys = list(c.keylist(secret=True)); print([k.fpr for k in keys])
mark("keylist public"); pub = list(c.keylist()); print(len(pub))
c.signers = keys
for armor in (True, False):
    c.armor = armor
    for mode, name in ((gpg.constants.sig.mode.NORMAL, "normal"), (gpg.constants.sig.mode.DETACH, "detached"), (gpg.constants.sig.mode.CLEAR, "clear")):
        if mode == gpg.constants.sig.mode.CLEAR and not armor: continue
        mark(f"sign {name} armor={armor}")
        sig, res = c.sign(b"hello gpgme\n", mode=mode)
        out[(name, armor)] = sig
        print(name, armor, len(sig), res.signatures[0].fpr)
c.armor = True
mark("export"); print(len(c.key_export(keys[0].fpr)))
mark("verify detached"); _, r = c.verify(b"hello gpgme\n", signature=out[("detached", True)]); print(r.signatures[0].status, r.signatures[0].summary)
mark("verify normal"); d, r = c.verify(out[("normal", False)]); print(d, r.signatures[0].status)
mark("verify clear"); d, r = c.verify(out[("clear", True)]); print(d, r.signatures[0].status)
