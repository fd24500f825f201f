#!/usr/bin/python3
"""faultfs: a pass-through FUSE filesystem that fails calls and loses power on command.

    faultfs.py BACKING_DIR MOUNTPOINT

Mirrors BACKING_DIR at MOUNTPOINT and prints "ready" on stdout once mounted.
Unmount with `fusermount3 -u MOUNTPOINT` (or `umount`) to stop it.

Control: the file MOUNTPOINT/.faultctl. Write one command per line:

    fail OP N|all [PATTERN]   make the next N (or every) OP fail with EIO, only on
                              files whose name matches the glob PATTERN (default *)
                              OP: write, fsync, fdatasync, sync (= fsync or fdatasync)
    clear                     forget every pending failure
    crash                     power loss: every file goes back to the content it had
                              at its last fsync/fdatasync (or at its creation)

Reading it answers `injected write=N fsync=N fdatasync=N crashes=N`.

The power-loss model: data is durable only once fsync/fdatasync returned, as on
a disk with a volatile cache; names (create, rename, unlink, mkdir) are durable at
once, as with a journaled filesystem's metadata. So a file renamed into place
without an fsync of its data comes back empty, as ext4 can leave it. The kernel's
page cache is not kept across opens (keep_cache off, zero attribute timeouts), so
what a restarted process reads after a crash is what this filesystem holds.

Written in Python against Debian's python3-pyfuse3 so that the campaign needs no
extra build: the file system is a test tool, never a part of qvault.
"""

import errno
import fnmatch
import os
import stat
import sys

import pyfuse3
import trio

CTL_NAME = b".faultctl"
CTL_INO = 1 << 60
CTL_FH = 1 << 60
OPS = ("write", "fsync", "fdatasync", "sync")


def eio():
    return pyfuse3.FUSEError(errno.EIO)


class FaultFS(pyfuse3.Operations):
    def __init__(self, root):
        super().__init__()
        self.root = root
        self.paths = {pyfuse3.ROOT_INODE: root}
        self.fd_ino = {}
        # ino -> (durable size, [(offset, old bytes)]): files with unsynced changes.
        self.dirty = {}
        self.rules = []
        self.injected = {op: 0 for op in OPS if op != "sync"}
        self.crashes = 0
        self.ctl_in = b""

    # -- helpers ---------------------------------------------------------
    def path(self, ino):
        try:
            return self.paths[ino]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT)

    def child(self, parent, name):
        return os.path.join(self.path(parent), os.fsdecode(name))

    def attrs(self, path, ino=None):
        st = os.lstat(path)
        ino = ino or st.st_ino
        self.paths[ino] = path
        a = pyfuse3.EntryAttributes()
        for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                  "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
            setattr(a, k, getattr(st, k))
        a.st_ino = ino
        a.generation = 0
        a.entry_timeout = 0
        a.attr_timeout = 0
        a.st_blksize = 4096
        a.st_blocks = (st.st_size + 511) // 512
        return a

    def ctl_attrs(self):
        a = pyfuse3.EntryAttributes()
        a.st_ino = CTL_INO
        a.st_mode = stat.S_IFREG | 0o600
        a.st_nlink = 1
        a.st_size = 0
        a.entry_timeout = 0
        a.attr_timeout = 0
        return a

    def fail(self, op, fd):
        """Raises EIO when a rule says this call fails."""
        name = os.path.basename(self.paths.get(self.fd_ino.get(fd), ""))
        for r in self.rules:
            if (r["op"] == op or (r["op"] == "sync" and op in ("fsync", "fdatasync"))) \
                    and fnmatch.fnmatchcase(name, r["pattern"]):
                if r["count"] is not None:
                    r["count"] -= 1
                    if r["count"] <= 0:
                        self.rules.remove(r)
                self.injected[op] += 1
                raise eio()

    def remember(self, ino, fd, off, end):
        """Before changing [off, end) of a file: keep what a crash restores."""
        if ino not in self.dirty:
            self.dirty[ino] = (os.fstat(fd).st_size, [])
        size, undo = self.dirty[ino]
        end = min(end, size)
        if off < end:
            undo.append((off, os.pread(fd, end - off, off)))

    def crash(self):
        for ino, (size, undo) in self.dirty.items():
            p = self.paths.get(ino)
            if p is None or not os.path.exists(p):
                continue
            fd = os.open(p, os.O_WRONLY)
            try:
                for off, old in reversed(undo):
                    os.pwrite(fd, old, off)
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
        self.dirty.clear()
        self.rules.clear()
        self.crashes += 1

    def command(self, line):
        words = line.split()
        if not words:
            return
        if words == ["clear"]:
            self.rules.clear()
        elif words == ["crash"]:
            self.crash()
        elif words[0] == "fail" and len(words) in (3, 4) and words[1] in OPS:
            count = None if words[2] == "all" else int(words[2])
            pattern = words[3] if len(words) == 4 else "*"
            self.rules.append({"op": words[1], "count": count, "pattern": pattern})
        else:
            print("faultfs: unknown command %r" % line, file=sys.stderr)
            raise pyfuse3.FUSEError(errno.EINVAL)

    # -- names -----------------------------------------------------------
    async def lookup(self, parent, name, ctx=None):
        if parent == pyfuse3.ROOT_INODE and name == CTL_NAME:
            return self.ctl_attrs()
        p = self.child(parent, name)
        try:
            return self.attrs(p)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def getattr(self, ino, ctx=None):
        if ino == CTL_INO:
            return self.ctl_attrs()
        try:
            return self.attrs(self.path(ino), ino)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def setattr(self, ino, attr, fields, fh, ctx):
        if ino == CTL_INO:
            return self.ctl_attrs()
        p = self.path(ino)
        try:
            if fields.update_size:
                fd = os.open(p, os.O_RDWR)
                try:
                    self.remember(ino, fd, attr.st_size, 1 << 62)
                    os.ftruncate(fd, attr.st_size)
                finally:
                    os.close(fd)
            if fields.update_mode:
                os.chmod(p, stat.S_IMODE(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                os.chown(p, attr.st_uid if fields.update_uid else -1,
                         attr.st_gid if fields.update_gid else -1)
            if fields.update_atime or fields.update_mtime:
                st = os.lstat(p)
                os.utime(p, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                                attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns))
            return self.attrs(p, ino)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def readlink(self, ino, ctx):
        return os.fsencode(os.readlink(self.path(ino)))

    async def opendir(self, ino, ctx):
        self.path(ino)
        return ino

    async def readdir(self, fh, start_id, token):
        p = self.path(fh)
        names = sorted(os.listdir(p))
        for i, n in enumerate(names[start_id:], start_id):
            try:
                a = self.attrs(os.path.join(p, n))
            except OSError:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(n), a, i + 1):
                break

    async def releasedir(self, fh):
        pass

    async def mkdir(self, parent, name, mode, ctx):
        p = self.child(parent, name)
        try:
            os.mkdir(p, mode)
            return self.attrs(p)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def rmdir(self, parent, name, ctx):
        try:
            os.rmdir(self.child(parent, name))
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def unlink(self, parent, name, ctx):
        try:
            os.unlink(self.child(parent, name))
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old, new = self.child(parent_old, name_old), self.child(parent_new, name_new)
        try:
            ino = os.lstat(old).st_ino
            os.rename(old, new)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        for i, p in list(self.paths.items()):
            if p == new and i != ino:
                del self.paths[i]
            elif p == old or p.startswith(old + "/"):
                self.paths[i] = new + p[len(old):]

    async def forget(self, inode_list):
        pass

    async def statfs(self, ctx):
        sv = os.statvfs(self.root)
        d = pyfuse3.StatvfsData()
        for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                  "f_files", "f_ffree", "f_favail", "f_namemax"):
            setattr(d, k, getattr(sv, k))
        return d

    async def access(self, ino, mode, ctx):
        return True

    # -- files -----------------------------------------------------------
    async def open(self, ino, flags, ctx):
        if ino == CTL_INO:
            return pyfuse3.FileInfo(fh=CTL_FH, direct_io=True)
        p = self.path(ino)
        try:
            fd = os.open(p, flags & ~os.O_CREAT & ~os.O_APPEND)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        self.fd_ino[fd] = ino
        if flags & os.O_TRUNC:
            self.remember(ino, fd, 0, 1 << 62)
        return pyfuse3.FileInfo(fh=fd, keep_cache=False)

    async def create(self, parent, name, mode, flags, ctx):
        p = self.child(parent, name)
        try:
            fd = os.open(p, (flags | os.O_CREAT) & ~os.O_APPEND, mode)
            a = self.attrs(p)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        self.fd_ino[fd] = a.st_ino
        # A new file's data is durable at its first sync: a crash before that empties it.
        self.dirty[a.st_ino] = (0, [])
        return pyfuse3.FileInfo(fh=fd, keep_cache=False), a

    async def read(self, fh, off, size):
        if fh == CTL_FH:
            s = "injected %s crashes=%d\n" % (
                " ".join("%s=%d" % kv for kv in self.injected.items()), self.crashes)
            return s.encode()[off:off + size]
        return os.pread(fh, size, off)

    async def write(self, fh, off, buf):
        if fh == CTL_FH:
            self.ctl_in += bytes(buf)
            while b"\n" in self.ctl_in:
                line, self.ctl_in = self.ctl_in.split(b"\n", 1)
                self.command(line.decode())
            return len(buf)
        self.fail("write", fh)
        ino = self.fd_ino[fh]
        self.remember(ino, fh, off, off + len(buf))
        try:
            return os.pwrite(fh, buf, off)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def flush(self, fh):
        if fh == CTL_FH and self.ctl_in:
            line, self.ctl_in = self.ctl_in, b""
            self.command(line.decode())

    async def fsync(self, fh, datasync):
        if fh == CTL_FH:
            return
        self.fail("fdatasync" if datasync else "fsync", fh)
        self.dirty.pop(self.fd_ino[fh], None)

    async def fsyncdir(self, fh, datasync):
        pass

    async def release(self, fh):
        if fh == CTL_FH:
            return
        self.fd_ino.pop(fh, None)
        os.close(fh)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: faultfs.py BACKING_DIR MOUNTPOINT")
    backing, mnt = os.path.abspath(sys.argv[1]), sys.argv[2]
    fs = FaultFS(backing)
    options = set(pyfuse3.default_options)
    options.add("fsname=faultfs")
    pyfuse3.init(fs, mnt, options)
    print("ready", flush=True)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=False)


if __name__ == "__main__":
    main()
