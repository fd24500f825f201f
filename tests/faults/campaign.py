#!/usr/bin/python3
"""qvault's fault campaign: real binaries, real faults, and one question after each:
does the log still verify, and is every released signature in it?

Run through scripts/faults (which installs fuse3 and python3-pyfuse3, and needs root
for mounts). A signature counts as released when qvault-gpg exited 0 and wrote the
signature and its receipt; it is found in the log when a Signature entry's
`sig_digest` is the SHA-256 of the signature packet, or the receipt's entry is in
the log verbatim.

Faults (stages):
  enospc    vault home on a small tmpfs whose size is stepped page by page while
            clients sign, so each write point meets a full disk in turn
  eio       EIO on write / fsync / fdatasync of chosen files (faultfs)
  readonly  a loop-mounted ext4 image with errors=remount-ro made to fail
  kill      SIGKILL of the daemon at random moments while clients sign
  powerloss SIGKILL, then faultfs drops every write not made durable by fsync
  tamper    the log cut, emptied or edited between restarts: serve must refuse
After each fault the daemon restarts; the campaign exports the log while it runs,
runs `qvault-audit verify-log`, and counts released signatures missing from it.
Synchronisation is on events (a socket accepting, a process exiting, a counter
changing); the only random waits are the moments faults are injected at.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.dirname(os.path.dirname(HERE))
SIM_DIR = os.path.join(WORKSPACE, "tests", "qrexec-sim")
USERID = "Alice Volunteer <alice@example.org>"
BIG = "64m"


class Campaign:
    def __init__(self, bin_dir, work, quick, verbose):
        self.bin_dir = bin_dir
        self.work = work
        self.quick = quick
        self.verbose = verbose
        self.faults = 0
        self.released = 0
        self.verified = 0
        self.failures = []
        self.vaults = []
        self.export_live = True
        self.seed = int(os.environ.get("QVAULT_FAULTS_SEED", "0")) or random.SystemRandom().randrange(1, 1 << 31)
        self.rng = random.Random(self.seed)

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def say(self, msg):
        print("faults: " + msg, flush=True)

    def fail(self, stage, msg):
        line = "FAIL [%s] %s" % (stage, msg.strip())
        self.failures.append(line)
        print(line, flush=True)

    def fault(self, n=1):
        self.faults += n

    @property
    def missing(self):
        return sum(v.gone for v in self.vaults)


def run(argv, timeout=60, **kw):
    try:
        return subprocess.run(argv, stdin=kw.pop("stdin", subprocess.DEVNULL), capture_output=True,
                              timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(argv, 124, e.stdout or b"", (e.stderr or b"") + b"(timed out)")


def text(b):
    return b.decode("utf-8", "replace").strip()


def socket_accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Vault:
    """A vault home, its `qvault serve`, and clients that sign through simulated qrexec."""

    def __init__(self, camp, home, stage):
        self.c = camp
        self.home = home
        self.stage = stage
        self.sock = os.path.join(camp.work, "%s.sock" % stage)
        self.errlog = os.path.join(camp.work, "%s.daemon.log" % stage)
        self.proc = None
        self.released = []  # (sha256 of signature, receipt entry JSON or None)
        self.gone = 0  # the most released signatures found missing at one check
        camp.vaults.append(self)
        self.lock = threading.Lock()
        self.seq = 0
        self.env = dict(os.environ, QVAULT_LOG="warn")
        for args in (["init", "--name", "faults", "--no-confirm"], ["keygen", "--userid", USERID]):
            p = self.qvault(args[:1] + ["--home", home] + args[1:])
            if p.returncode != 0:
                raise SystemExit("setting up a vault: qvault %s: %s" % (args[0], text(p.stderr)))
        p = self.qvault(["log", "key", "--home", home])
        self.log_key = text(p.stdout)

    def qvault(self, args, timeout=60):
        return run([self.c.bin("qvault")] + args, timeout=timeout, env=self.env)

    # -- the daemon ------------------------------------------------------
    def serve(self, expect=True):
        """Starts `qvault serve`; returns None once its socket accepts calls, or
        (exit code, stderr) when it exits first."""
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        err = open(self.errlog, "ab")
        start = err.tell()
        self.proc = subprocess.Popen(["unshare", "-n", "--", self.c.bin("qvault"), "serve", "--home", self.home,
                                      "--socket", self.sock], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, env=self.env)
        err.close()
        deadline = time.monotonic() + 60
        while not socket_accepts(self.sock):
            code = self.proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    self.kill()
                self.proc = None
                with open(self.errlog, "rb") as f:
                    f.seek(start)
                    msg = text(f.read())
                if expect:
                    self.c.fail(self.stage, "qvault serve did not start (exit %s): %s" % (code, msg[-600:]))
                return (code, msg)
            time.sleep(0.005)
        return None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self):
        self.stop()
        return self.serve() is None

    # -- clients ---------------------------------------------------------
    def client_env(self, n):
        home = os.path.join(self.c.work, "%s.client%d" % (self.stage, n))
        os.makedirs(os.path.join(home, "home"), exist_ok=True)
        return dict(os.environ, PATH=os.pathsep.join([self.c.bin_dir, SIM_DIR, os.environ.get("PATH", "")]),
                    HOME=os.path.join(home, "home"), XDG_CONFIG_HOME=os.path.join(home, "home", ".config"),
                    QUBES_GPG_DOMAIN="vault", QVAULT_GPG_HOME=os.path.join(home, "gpg"),
                    QVAULT_SIM_SOURCE="work", QVAULT_SIM_SOCKET=self.sock, LC_ALL="C")

    def sign(self, n=0):
        """One detached signature by client `n`; returns (exit code, stderr)."""
        with self.lock:
            self.seq += 1
            seq = self.seq
        d = os.path.join(self.c.work, "%s.sigs" % self.stage)
        os.makedirs(d, exist_ok=True)
        sig, rec = os.path.join(d, "%d.sig" % seq), os.path.join(d, "%d.receipt" % seq)
        data = ("%s signature %d %s\n" % (self.stage, seq, os.urandom(8).hex())).encode()
        p = run([self.c.bin("qvault-gpg"), "-b", "--yes", "-o", sig, "--receipt-out", rec], timeout=90,
                stdin=None, input=data, env=self.client_env(n))
        if p.returncode == 0 and os.path.exists(sig) and os.path.exists(rec):
            with open(sig, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            entry = None
            try:
                with open(rec) as f:
                    entry = json.load(f).get("entry")
            except (OSError, ValueError, AttributeError):
                pass
            with self.lock:
                self.released.append((digest, entry))
                self.c.released += 1
        return p.returncode, text(p.stderr)

    # -- after a fault ---------------------------------------------------
    def export(self):
        """The log export, while the daemon runs (the contract); when that fails,
        once, the failure is recorded and later exports stop the daemon first."""
        if self.c.export_live:
            if not self.running():
                self.serve()
            p = self.qvault(["log", "export", "--home", self.home], timeout=15)
            if p.returncode == 0:
                return p.stdout
            self.c.fail(self.stage, "`qvault log export` while the daemon runs: exit %d: %s"
                        % (p.returncode, text(p.stderr)[-300:]))
            self.c.export_live = False
        self.stop()
        p = self.qvault(["log", "export", "--home", self.home])
        self.serve()
        if p.returncode != 0:
            self.c.fail(self.stage, "`qvault log export`: exit %d: %s" % (p.returncode, text(p.stderr)[-300:]))
            return None
        return p.stdout

    def check(self, what):
        """Restarted daemon, export, verify-log, released signatures in the log."""
        if not self.running() and self.serve() is not None:
            self.gone = max(self.gone, len(self.released))
            return False
        exp = self.export()
        if exp is None:
            return False
        path = os.path.join(self.c.work, "%s.export" % self.stage)
        with open(path, "wb") as f:
            f.write(exp)
        p = run([self.c.bin("qvault-audit"), "verify-log", path, "--log-key", self.log_key])
        ok = p.returncode == 0
        if not ok:
            keep = os.path.join(self.c.work, "%s.bad-%d.export" % (self.stage, self.c.faults))
            shutil.copy(path, keep)
            self.c.fail(self.stage, "after %s: qvault-audit verify-log rejects the log (kept as %s): %s"
                        % (what, keep, problems(p)))
        digests, entries = set(), set()
        for line in exp.split(b"\n"):
            if line.startswith(b"entry "):
                raw = line[6:].decode("utf-8", "replace")
                entries.add(raw)
                try:
                    e = json.loads(raw)
                except ValueError:
                    continue
                for v in walk(e):
                    digests.add(v)
        gone = [d for d, e in self.released if d not in digests and (e is None or e not in entries)]
        self.gone = max(self.gone, len(gone))
        if gone:
            self.c.fail(self.stage, "after %s: %d of %d released signatures are missing from the log "
                        "(first sig_digest %s)" % (what, len(gone), len(self.released), gone[0]))
        self.c.verified += 1
        return ok and not gone

    def refuses_after_error(self, what):
        """The contract: after a write or sync error every call is refused (exit 2,
        a message about the log) until the daemon restarts."""
        answered = []
        for _ in range(5):
            code, err = self.sign()
            if code != 2 or "log" not in err.lower():
                answered.append("exit %d%s" % (code, (": " + err[-160:]) if code else " (signature released)"))
        if answered:
            self.c.fail(self.stage, "after %s the daemon still answers %d of 5 signing calls: %s"
                        % (what, len(answered), answered[0]))

    def signs_again(self, what):
        code, err = self.sign()
        if code != 0:
            self.c.fail(self.stage, "after %s and a restart, signing fails: exit %d: %s" % (what, code, err[-300:]))


def problems(p):
    """verify-log's first problems, on one line."""
    lines = [l.strip() for l in (text(p.stdout) + "\n" + text(p.stderr)).splitlines()]
    probs = [l for l in lines if "PROBLEM" in l or "error" in l.lower()]
    more = " (+%d more)" % (len(probs) - 3) if len(probs) > 3 else ""
    return " | ".join(probs[:3] or lines[-3:]) + more


def walk(v):
    """Every string value under a `sig_digest` key in a parsed entry."""
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "sig_digest" and isinstance(x, str):
                yield x
            else:
                yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)


class Signers:
    """Client threads signing in a loop until stopped (or until one call fails,
    with stop_on_error). `first_error` holds that failure."""

    def __init__(self, vault, n=3, stop_on_error=False):
        self.v = vault
        self.stop_ev = threading.Event()
        self.stop_on_error = stop_on_error
        self.first_error = None
        self.ok = 0
        self.calls = 0
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def loop(self, i):
        while not self.stop_ev.is_set():
            code, err = self.v.sign(i)
            with self.cond:
                self.calls += 1
                if code == 0:
                    self.ok += 1
                elif self.first_error is None:
                    self.first_error = (code, err)
                    if self.stop_on_error:
                        self.stop_ev.set()
                self.cond.notify_all()

    def wait_for(self, pred, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: pred(self), timeout=timeout)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join()


def sh(*argv):
    p = subprocess.run(argv, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), text(p.stderr)))
    return text(p.stdout)


# -- stages ----------------------------------------------------------------

def stage_enospc(c):
    mnt = os.path.join(c.work, "tmpfs")
    os.makedirs(mnt)
    sh("mount", "-t", "tmpfs", "-o", "size=" + BIG + ",mode=0700", "tmpfs", mnt)
    try:
        v = Vault(c, os.path.join(mnt, "vault"), "enospc")
        v.serve()
        steps = 6 if c.quick else 16
        points = {}
        for step in range(steps):
            sv = os.statvfs(mnt)
            used_pages = (sv.f_blocks - sv.f_bfree) * sv.f_frsize // 4096
            slack = 1 + step % 4
            sh("mount", "-o", "remount,size=%dk" % ((used_pages + slack) * 4), mnt)
            s = Signers(v, n=2, stop_on_error=True)
            hit = s.wait_for(lambda s: s.first_error is not None, timeout=120)
            s.stop()
            sh("mount", "-o", "remount,size=" + BIG, mnt)
            if not hit:
                c.fail("enospc", "step %d: no call failed with %d free pages" % (step, slack))
                continue
            c.fault()
            m = re.search(r"(writing|syncing|renaming|storing)[^:]*", s.first_error[1])
            point = m.group(0).strip() if m else s.first_error[1][-60:]
            points[point] = points.get(point, 0) + 1
            what = "ENOSPC at step %d (%d free pages; the client saw: exit %d: %s)" % (
                step, slack, s.first_error[0], s.first_error[1][-160:])
            if c.verbose:
                c.say(what)
            v.refuses_after_error("ENOSPC at step %d" % step)
            v.restart()
            v.check(what)
            v.signs_again("ENOSPC at step %d" % step)
        v.stop()
        c.say("enospc: where the full disk was met: " + "; ".join("%s (%d)" % kv for kv in sorted(points.items())))
    finally:
        subprocess.run(["umount", "-l", mnt])


class FaultFS:
    def __init__(self, c, name):
        self.back = os.path.join(c.work, name + ".back")
        self.mnt = os.path.join(c.work, name + ".mnt")
        os.makedirs(self.back)
        os.makedirs(self.mnt)
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "faultfs.py"), self.back, self.mnt],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise SystemExit("faultfs did not start")

    def ctl(self, cmd):
        with open(os.path.join(self.mnt, ".faultctl"), "w") as f:
            f.write(cmd + "\n")

    def injected(self):
        with open(os.path.join(self.mnt, ".faultctl")) as f:
            words = f.read().split()
        return sum(int(w.split("=")[1]) for w in words[1:] if not w.startswith("crashes="))

    def close(self):
        subprocess.run(["fusermount3", "-u", self.mnt])
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            subprocess.run(["umount", "-l", self.mnt])


def stage_eio(c):
    fs = FaultFS(c, "eio")
    try:
        v = Vault(c, os.path.join(fs.mnt, "vault"), "eio")
        v.serve()
        # `head` is the durable checkpoint (docs/log-format.md, Durability).
        cases = [("write", "entries"), ("write", "[0-9][0-9]"), ("write", "head"),
                 ("fdatasync", "entries"), ("fdatasync", "[0-9][0-9]"), ("fdatasync", "head"),
                 ("fsync", "*"), ("sync", "*")]
        rounds = 1 if c.quick else 3
        for rnd in range(rounds):
            for op, pattern in cases:
                what = "EIO on %s of %s" % (op, pattern)
                s = Signers(v, n=2)
                s.wait_for(lambda s: s.ok >= 2 or s.calls >= 12, timeout=60)
                before = fs.injected()
                fs.ctl("fail %s 1 %s" % (op, pattern))
                deadline = time.monotonic() + 20
                while fs.injected() == before and time.monotonic() < deadline:
                    n = s.calls
                    s.wait_for(lambda s: s.calls > n, timeout=5)
                hit = fs.injected() > before
                fs.ctl("clear")
                s.stop()
                if not hit:
                    c.say("%s: not reached while signing (no such call made)" % what)
                    continue
                c.fault()
                v.refuses_after_error(what)
                v.restart()
                v.check(what)
                v.signs_again(what)
        v.stop()
    finally:
        fs.close()


def stage_readonly(c):
    img = os.path.join(c.work, "ro.img")
    mnt = os.path.join(c.work, "ro.mnt")
    os.makedirs(mnt)
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    sh("mkfs.ext4", "-q", "-F", img)

    def mount():
        sh("mount", "-o", "loop,errors=remount-ro", img, mnt)
        return os.path.basename(sh("findmnt", "-no", "SOURCE", mnt))

    dev = mount()
    try:
        v = Vault(c, os.path.join(mnt, "vault"), "readonly")
        v.serve()
        for rnd in range(2 if c.quick else 5):
            s = Signers(v, n=2)
            want = 2 + c.rng.randrange(5)
            s.wait_for(lambda s: s.ok >= want or s.calls >= want + 10, timeout=60)
            with open("/sys/fs/ext4/%s/trigger_fs_error" % dev, "w") as f:
                f.write("1")
            s.wait_for(lambda s: s.first_error is not None, timeout=30)
            s.stop()
            c.fault()
            what = "the filesystem turning read-only (round %d)" % rnd
            v.refuses_after_error(what)
            v.stop()
            sh("umount", mnt)
            subprocess.run(["e2fsck", "-fy", img], capture_output=True)
            dev = mount()
            v.serve()
            v.check(what)
            v.signs_again(what)
        v.stop()
    finally:
        subprocess.run(["umount", "-l", mnt])


def stage_kill(c):
    v = Vault(c, os.path.join(c.work, "kill.vault"), "kill")
    kills = 200 if c.quick else 1000
    s = Signers(v, n=3)
    for k in range(1, kills + 1):
        if v.serve() is not None:
            break
        time.sleep(c.rng.uniform(0, 0.3))
        v.kill()
        c.fault()
        if k % 100 == 0 or k == kills:
            s.stop()
            v.check("%d SIGKILLs" % k)
            v.stop()
            if c.verbose:
                c.say("kill: %d kills, %d released" % (k, len(v.released)))
            s = Signers(v, n=3)
    s.stop()
    v.stop()


def stage_powerloss(c):
    fs = FaultFS(c, "power")
    try:
        v = Vault(c, os.path.join(fs.mnt, "vault"), "powerloss")
        for n in range(1, (15 if c.quick else 60) + 1):
            if v.serve() is not None:
                break
            s = Signers(v, n=3)
            want = 1 + c.rng.randrange(4)
            s.wait_for(lambda s: s.ok >= want or s.calls >= want + 10, timeout=60)
            v.kill()
            s.stop()
            fs.ctl("crash")
            c.fault()
            v.check("power loss %d" % n)
            v.kill()
        v.stop()
    finally:
        fs.close()


def stage_tamper(c):
    v = Vault(c, os.path.join(c.work, "tamper.vault"), "tamper")
    v.serve()
    for _ in range(12):
        v.sign()
    v.stop()
    log = os.path.join(v.home, "log")
    backup = os.path.join(c.work, "tamper.backup")
    shutil.copytree(v.home, backup, symlinks=True)
    with open(os.path.join(log, "entries"), "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    n = len(lines)
    mid = n // 2

    def cut3():
        with open(os.path.join(log, "entries"), "r+b") as f:
            f.truncate(sum(len(x) + 1 for x in lines[:n - 3]))

    def empty():
        open(os.path.join(log, "entries"), "wb").close()

    def edit():
        line = lines[mid]
        m = re.search(rb"[0-9a-f]{40}", line)
        if not m:
            raise SystemExit("tamper: no hex field in entry %d" % mid)
        at = sum(len(x) + 1 for x in lines[:mid]) + m.start()
        with open(os.path.join(log, "entries"), "r+b") as f:
            f.seek(at)
            f.write(b"0" if line[m.start():m.start() + 1] != b"0" else b"1")

    def tree():
        with open(os.path.join(log, "tree", "00"), "r+b") as f:
            f.seek(mid * 32 + 5)
            b = f.read(1)
            f.seek(mid * 32 + 5)
            f.write(bytes([b[0] ^ 0xFF]))

    cases = [("cutting 3 entries off the end", cut3, "log/entries", n - 3),
             ("emptying log/entries", empty, "log/entries", 0),
             ("changing a byte of entry %d" % mid, edit, "log/entries", mid),
             ("changing tree hash %d in log/tree/00" % mid, tree, "log/tree/00", mid)]
    for what, do, fname, index in cases:
        do()
        c.fault()
        got = v.serve(expect=False)
        if got is None:
            c.fail("tamper", "after %s, qvault serve started (it must refuse, naming %s and index %d)"
                   % (what, fname, index))
            v.kill()
        else:
            code, msg = got
            if code != 2 or fname not in msg or not re.search(r"\b%d\b" % index, msg):
                c.fail("tamper", "after %s, qvault serve exited %s without naming %s and index %d: %s"
                       % (what, code, fname, index, msg[-300:]))
        shutil.rmtree(v.home)
        shutil.copytree(backup, v.home, symlinks=True)
    v.check("tampering, once the log was restored")
    v.stop()


STAGES = {"tamper": stage_tamper, "enospc": stage_enospc, "eio": stage_eio, "readonly": stage_readonly,
          "powerloss": stage_powerloss, "kill": stage_kill}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer faults (for CI)")
    ap.add_argument("--only", action="append", choices=list(STAGES), help="run only these stages")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    for b in ("qvault", "qvault-gpg", "qvault-audit"):
        if not os.access(os.path.join(a.bin_dir, b), os.X_OK):
            raise SystemExit("%s missing in %s" % (b, a.bin_dir))
    work = tempfile.mkdtemp(prefix="qvault-faults.")
    c = Campaign(os.path.abspath(a.bin_dir), work, a.quick, a.verbose)
    # A stopped campaign still unmounts what it mounted (the stages' finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    c.say("seed %d (QVAULT_FAULTS_SEED=%d repeats the choices, not the timing)" % (c.seed, c.seed))
    start = time.monotonic()
    try:
        for name in a.only or list(STAGES):
            t = time.monotonic()
            before = (c.faults, c.released, len(c.failures))
            try:
                STAGES[name](c)
            except Exception as e:  # a broken stage is a failure, and the others still run
                c.fail(name, "stage aborted: %r" % e)
            c.say("%s: %d faults, %d released signatures, %d failures (%.0fs)" % (
                name, c.faults - before[0], c.released - before[1], len(c.failures) - before[2],
                time.monotonic() - t))
    finally:
        if a.keep or c.failures:
            c.say("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    c.say("%d logs exported and checked in %.0fs" % (c.verified, time.monotonic() - start))
    if c.failures:
        print("%d failures:" % len(c.failures))
        for f in c.failures:
            print("  " + f)
    print("faults injected: %d; released signatures: %d; missing from a log that verifies: %d"
          % (c.faults, c.released, c.missing))
    sys.exit(1 if c.failures or c.missing else 0)


if __name__ == "__main__":
    main()
