#!/usr/bin/env python3
"""Verifies many signatures with PGPy in one process, for tests/e2e/verifiers.rs.

Usage: pgpy_verify.py JOBS.json. Each job: {id, cert, sig, data?, kind:
"detached"|"inline"|"clear", original, text}. Prints one line per job:
"id<TAB>GOOD<TAB>signer key id" when the signature verifies (and an inline
message's data equals `original`), else "id<TAB>BAD<TAB>PGPy's reason".
"""
import json
import re
import sys
import warnings

import pgpy

# PGPy warns on things it merely dislikes; a verdict is what counts here.
warnings.simplefilter("ignore")


def check(job):
    key, _ = pgpy.PGPKey.from_file(job["cert"])
    with open(job["original"], "rb") as f:
        original = f.read()
    if job["text"]:
        # Text-mode data travels with CRLF line ends (RFC 9580 5.9), as gpg writes it.
        original = re.sub(rb"\r?\n", b"\r\n", original)
    if job["kind"] == "detached":
        sig = pgpy.PGPSignature.from_file(job["sig"])
        with open(job["data"], "rb") as f:
            data = f.read()
        verified = key.verify(data, sig)
    else:
        msg = pgpy.PGPMessage.from_file(job["sig"])
        verified = key.verify(msg)
        if job["kind"] == "inline":
            got = msg.message
            got = got.encode("utf-8") if isinstance(got, str) else bytes(got)
            if got != original:
                raise ValueError(f"signed data differs from the original ({len(got)} vs {len(original)} bytes)")
    if not verified:
        reasons = "; ".join(f"{s.signature.signer}: {getattr(s, 'issues', 'bad')!r}" for s in verified.bad_signatures)
        raise ValueError(f"not verified: {reasons or 'no good signature'}")
    good = [s.by.fingerprint.keyid for s in verified.good_signatures]
    return good[0]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    for job in jobs:
        try:
            verdict = "GOOD\t" + str(check(job))
        except Exception as e:  # noqa: BLE001 -- every failure is a verdict
            verdict = "BAD\t" + " ".join(f"{type(e).__name__}: {e}".split())
        print(f"{job['id']}\t{verdict}", flush=True)


if __name__ == "__main__":
    main()
