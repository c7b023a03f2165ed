#!/usr/bin/python3
"""Run a command and record every file under /usr that it (or any process it
starts) opens or executes.

    watch-opens.py OUT -- COMMAND [ARG...]

The list (one file a line, written as files are seen: "exec PATH" for a
program or library executed, "open PATH" for a file opened; "exec-pm" and
"open-pm" when the process runs under dpkg or apt) is what check-packages.py
maps to Debian packages, to prove that dev.sh's package lists name
everything the tests use at run time.

How: the command runs in a private mount namespace in which /usr is
bind-mounted onto itself, and a fanotify mark on that one mount reports every
open and exec through it. Processes outside the namespace (other jobs on the
machine) use the original mount and are not seen. In a chroot, where that
namespace cannot be made private, the mark goes on the mount that holds /usr
and events are kept only from the command's own processes. This needs root
(CAP_SYS_ADMIN); without it the command runs unwatched, OUT says so in its
first line, and the exit status is the command's either way.
"""
import ctypes
import ctypes.util
import os
import select
import struct
import sys

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE, MS_BIND = 0x4000, 1 << 18, 0x1000
FAN_CLASS_NOTIF, FAN_CLOEXEC, FAN_NONBLOCK, FAN_UNLIMITED_QUEUE = 0x0, 0x1, 0x2, 0x10
FAN_MARK_ADD, FAN_MARK_MOUNT = 0x1, 0x10
FAN_OPEN, FAN_OPEN_EXEC, FAN_Q_OVERFLOW = 0x20, 0x1000, 0x4000
AT_FDCWD = -100
EVENT = struct.Struct("IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]


def private_usr():
    """Enter a private mount namespace with /usr as its own mount. Returns
    False where / is no mount point (a chroot), where the bind would
    propagate to the parent namespace: the caller then watches the shared
    mount and filters events by process."""
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    if libc.mount(b"/usr", b"/usr", None, MS_BIND | MS_REC, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --bind /usr /usr")
    return True


def watch_setup():
    """Return (a fanotify fd watching the mount of /usr, whether events need
    filtering by process), or raise OSError."""
    private = private_usr()
    fd = libc.fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
                            os.O_RDONLY | os.O_LARGEFILE)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "fanotify_init")
    if libc.fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN | FAN_OPEN_EXEC, AT_FDCWD, b"/usr") != 0:
        raise OSError(ctypes.get_errno(), "fanotify_mark /usr")
    return fd, not private


def descends_from(pid, root, cache):
    """Whether process PID is ROOT or one of its descendants (False once it
    has exited: its ancestry can no longer be read)."""
    chain = []
    while pid > 1 and pid not in cache:
        if pid == root:
            cache[pid] = True
            break
        chain.append(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    verdict = cache.get(pid, False)
    for p in chain:
        cache[p] = verdict
    return verdict


PACKAGE_MANAGERS = {"dpkg", "apt-get", "apt", "dpkg-deb", "dpkg-trigger"}


def under_package_manager(pid):
    """Whether PID runs under dpkg or apt (a package install's triggers and
    maintainer scripts, which scan whole folders of whatever is installed)."""
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
        except OSError:
            return False
        if head.split("(", 1)[1] in PACKAGE_MANAGERS:
            return True
        pid = int(tail.split()[1])
    return False


def drain(fd, seen, out, keep):
    """Read the queued events; note each new path opened by a process that
    KEEP accepts."""
    try:
        buf = os.read(fd, 65536)
    except BlockingIOError:
        return True
    off = 0
    while off + EVENT.size <= len(buf):
        length, _, _, _, mask, efd, pid = EVENT.unpack_from(buf, off)
        if mask & FAN_Q_OVERFLOW:
            out.write("# queue overflow: some opens were not seen\n")
        if efd >= 0:
            try:
                path = os.readlink(f"/proc/self/fd/{efd}")
            finally:
                os.close(efd)
            kind = "exec" if mask & FAN_OPEN_EXEC else "open"
            if path.startswith("/usr/") and (kind, path) not in seen and keep(pid):
                seen.add((kind, path))
                out.write(f"{kind}{'-pm' if under_package_manager(pid) else ''} {path}\n")
        off += length
    out.flush()
    return True


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: watch-opens.py OUT -- COMMAND [ARG...]")
    out = open(sys.argv[1], "w")
    cmd = sys.argv[3:]
    try:
        fd, shared = watch_setup()
    except OSError as e:
        out.write(f"# not watched: {e}\n")
        out.close()
        print(f"watch-opens: not watching ({e}); running the command as it is", file=sys.stderr)
        os.execvp(cmd[0], cmd)
    out.write("# opened under /usr" + (" (shared mount: by process)" if shared else "") + "\n")
    pid = os.fork()
    if pid == 0:
        os.close(fd)
        os.execvp(cmd[0], cmd)
    seen, cache = set(), {}
    keep = (lambda p: descends_from(p, pid, cache)) if shared else (lambda p: True)
    status = None
    while status is None:
        select.select([fd], [], [], 0.2)
        drain(fd, seen, out, keep)
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    drain(fd, seen, out, keep)
    out.close()
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
