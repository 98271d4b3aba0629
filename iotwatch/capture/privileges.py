"""Least privilege for a live capture started as root: dumpcap opens the interface as root, then
iotwatch becomes an ordinary user before it analyses anything.

Which user: ``--user NAME`` if given, else the user who ran ``sudo`` (``SUDO_UID``/``SUDO_GID``),
else none (a root login without ``--user`` keeps root: there is nobody to become). The switch is
for good: supplementary groups, group and user ids (real, effective and saved) all change, so the
capabilities go with them and cannot come back (``no_new_privs`` is set as well). From then on
the outputs, the ring and anything a parser bug could touch belong to that user.

One thing still needs root after the switch: signalling dumpcap (a root process) to stop. A
stopper, a shell started as root before the switch, holds nothing but a pipe from iotwatch and
dumpcap's process id: a ``stop`` line sends dumpcap SIGINT, ``kill`` SIGKILL, ``done`` (dumpcap
has been waited for) ends it quietly. If iotwatch dies, the pipe's end makes the stopper stop
dumpcap, so no capture outlives it.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import subprocess
from dataclasses import dataclass

from .interfaces import InterfaceError

PR_SET_NO_NEW_PRIVS = 38

#: the stopper: reads commands until ``done`` or the pipe's end (then SIGINT, as iotwatch died)
STOPPER = ('pid=$1; while read -r cmd; do case "$cmd" in done) exit 0;; kill) kill -KILL "$pid";; '
           '*) kill -INT "$pid";; esac; done 2>/dev/null; kill -INT "$pid" 2>/dev/null; exit 0')


@dataclass(frozen=True, slots=True)
class User:
    name: str
    uid: int
    gid: int
    home: str


def target_user(name: str | None) -> User | None:
    """The user to become after dumpcap has started, or None to stay as we are.

    Raises :class:`~iotwatch.capture.interfaces.InterfaceError` (one line) for an unknown user,
    or for ``--user`` given without root (only root can become somebody else)."""
    if name is not None:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise InterfaceError(f"--user {name}: no such user on this machine") from None
        if os.geteuid() != 0:
            if pw.pw_uid == os.geteuid():
                return None
            raise InterfaceError(f"--user {name}: only root can run the analysis as another user "
                                 "(run with sudo, or leave --user out)")
        return None if pw.pw_uid == 0 else User(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    if os.geteuid() != 0:
        return None
    uid, gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
    if not uid.isdigit() or int(uid) == 0:
        return None
    try:
        pw = pwd.getpwuid(int(uid))
        return User(pw.pw_name, pw.pw_uid, int(gid) if gid.isdigit() else pw.pw_gid, pw.pw_dir)
    except KeyError:  # a uid without a passwd entry (a container): its numbers are enough
        return User(uid, int(uid), int(gid) if gid.isdigit() else int(uid), "/")


def become(user: User) -> None:
    """Become ``user`` for good (groups, gid, uid; capabilities are dropped by the kernel with
    the uid). Raises :class:`InterfaceError` if the kernel refuses."""
    try:
        try:
            os.initgroups(user.name, user.gid)
        except OSError:
            os.setgroups([])  # a user without a passwd entry: no supplementary groups
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as e:
        raise InterfaceError(f"cannot become user {user.name} (uid {user.uid}): {e.strerror or e}") from None
    if os.getuid() != user.uid or os.geteuid() != user.uid:  # never go on half-switched
        raise InterfaceError(f"cannot become user {user.name}: still uid {os.geteuid()}")
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the uid switch above is what matters
    os.environ["HOME"] = user.home
    os.environ["USER"] = os.environ["LOGNAME"] = user.name


class Stopper:
    """Signals a root process on behalf of an iotwatch that is no longer root (see module doc)."""

    def __init__(self, pid: int) -> None:
        self.proc = subprocess.Popen(["/bin/sh", "-c", STOPPER, "iotwatch-stopper", str(pid)],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, close_fds=True)

    def _say(self, what: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(what.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def interrupt(self) -> None:
        self._say("stop")

    def kill(self) -> None:
        self._say("kill")

    def done(self) -> None:
        """dumpcap has been waited for: the stopper ends without signalling anything."""
        self._say("done")
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
