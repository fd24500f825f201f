// Verifies many signatures with OpenPGP.js in one process, for
// tests/e2e/verifiers.rs. Usage: node verify.cjs NODE_PREFIX JOBS.json
// NODE_PREFIX holds node_modules/openpgp (scripts/interop-deps installs it).
// Each job: {id, cert, sig, data?, kind: "detached"|"inline"|"clear", original, text}.
// Prints one line per job: "id<TAB>GOOD<TAB>signer fingerprint" when the
// signature verifies and an inline message's data equals `original`, else
// "id<TAB>BAD<TAB>OpenPGP.js's error message".
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const openpgp = createRequire(path.join(path.resolve(process.argv[2]), 'package.json'))('openpgp');
const jobs = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));

const isArmored = (bytes) => bytes.subarray(0, 5).toString('latin1') === '-----';

async function readKey(file) {
  const bytes = fs.readFileSync(file);
  return isArmored(bytes)
    ? openpgp.readKey({ armoredKey: bytes.toString('utf8') })
    : openpgp.readKey({ binaryKey: new Uint8Array(bytes) });
}

async function check(job) {
  const key = await readKey(job.cert);
  const sigBytes = fs.readFileSync(job.sig);
  let original = fs.readFileSync(job.original);
  if (job.text) {
    // Text-mode data travels with CRLF line ends (RFC 9580 5.9), as gpg writes it.
    original = Buffer.from(original.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
  }
  let result;
  if (job.kind === 'detached') {
    const signature = isArmored(sigBytes)
      ? await openpgp.readSignature({ armoredSignature: sigBytes.toString('utf8') })
      : await openpgp.readSignature({ binarySignature: new Uint8Array(sigBytes) });
    const message = await openpgp.createMessage({ binary: new Uint8Array(fs.readFileSync(job.data)) });
    result = await openpgp.verify({ message, signature, verificationKeys: key, expectSigned: true, format: 'binary' });
  } else if (job.kind === 'clear') {
    const message = await openpgp.readCleartextMessage({ cleartextMessage: sigBytes.toString('utf8') });
    result = await openpgp.verify({ message, verificationKeys: key, expectSigned: true });
  } else {
    const message = isArmored(sigBytes)
      ? await openpgp.readMessage({ armoredMessage: sigBytes.toString('utf8') })
      : await openpgp.readMessage({ binaryMessage: new Uint8Array(sigBytes) });
    result = await openpgp.verify({ message, verificationKeys: key, expectSigned: true, format: 'binary' });
  }
  // expectSigned: verify() has thrown unless a signature verified.
  await result.signatures[0].verified;
  const signer = (await result.signatures[0].signature).packets[0].issuerFingerprint;
  const fpr = Buffer.from(signer).toString('hex').toUpperCase();
  if (job.kind === 'inline') {
    // An inline message carries the data itself: it must come back unchanged.
    // (A cleartext message's text is the data up to line endings and
    // trailing whitespace, which the signature covers only in canonical form.)
    const got = typeof result.data === 'string' ? Buffer.from(result.data, 'utf8') : Buffer.from(result.data);
    if (!got.equals(original)) {
      throw new Error(`signed data differs from the original (${got.length} vs ${original.length} bytes)`);
    }
  }
  return fpr;
}

(async () => {
  for (const job of jobs) {
    try {
      const fpr = await check(job);
      process.stdout.write(`${job.id}\tGOOD\t${fpr}\n`);
    } catch (e) {
      process.stdout.write(`${job.id}\tBAD\t${String(e && e.message ? e.message : e).replace(/\s+/g, ' ')}\n`);
    }
  }
})();
