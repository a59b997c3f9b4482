"""Read-only release folders for a replica, even when the daemon runs as root.

Sealed artifacts are 0444/0555, which stops any process that is not their owner's or root's. A
daemon running as root (a server install, CI) starts replicas as root unless workload isolation
gives them their own user, and root ignores file modes. So when the daemon may mount, each replica
gets its own mount namespace in which the artifact and its dependency layer are bind-mounted
read-only: a write fails with EROFS ("Read-only file system") whoever the process is. The mounts
are private to that namespace; the host's view is unchanged. Without the privilege, nothing is
done here and the file modes are the protection. Called by :func:`processes.spawn`, the release
command and exec health checks, through :func:`popen`.

The namespace is made by a short-lived thread of the daemon, not by the child between fork and exec
(a ``preexec_fn``): a thread may unshare its own mount namespace (``CLONE_NEWNS`` implies ``CLONE_FS``,
which a thread of a multi-threaded process may unshare), mount there, and start the child, which
inherits that namespace. Without a ``preexec_fn`` Python starts the child with ``vfork`` instead of
``fork``, which copies none of the daemon's memory: ~0.2 ms instead of 4–14 ms per child for a daemon of
60–200 MB (a deploy starts four: the release command three times with its rehearsal, then the replica).
The thread ends once the child runs; the namespace lives on in the child alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import threading
from typing import Any

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_unshare = _libc.unshare
_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def available() -> bool:
    """Whether this process may make mount namespaces (root with CAP_SYS_ADMIN, on Linux)."""
    return os.geteuid() == 0 and os.path.exists("/proc/self/ns/mnt")


def _readonly_here(targets: list[bytes]) -> None:
    """Give the calling thread its own mount namespace with ``targets`` bind-mounted read-only. Failures are
    silent on purpose: the child still runs with the file modes' protection, and raising would turn a missing
    kernel feature into a failed deploy. Only in a thread that exits afterwards."""
    if _unshare(_CLONE_NEWNS) != 0:
        return
    root, none = b"/", None
    if _mount(none, root, none, _MS_REC | _MS_PRIVATE, none) != 0:
        return  # never mount in a namespace whose mounts could propagate back to the host's
    for target in targets:
        if _mount(target, target, none, _MS_BIND | _MS_REC, none) == 0:
            _mount(none, target, none, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, none)
    # The thread's working folder still points below the new mounts: enter the same path again, so a child
    # started without a cwd of its own in a read-only folder writes nothing there either. The thread has its own
    # (CLONE_FS, implied), so the daemon's other threads keep theirs.
    try:
        os.chdir(os.getcwd())
    except OSError:
        pass


def popen(args: list[str], readonly: tuple[str, ...], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **kwargs)`` with ``readonly`` folders read-only for the child (and its children).

    The child changes into its ``cwd`` after the mounts exist, so a relative write into the release meets the
    read-only mount. Raises what ``Popen`` raises."""
    if not readonly or not available():
        return subprocess.Popen(args, **kwargs)
    targets = [p.encode() for p in readonly if os.path.isdir(p)]
    made: list[subprocess.Popen[bytes]] = []
    failed: list[BaseException] = []

    def start() -> None:
        try:
            _readonly_here(targets)
            made.append(subprocess.Popen(args, **kwargs))
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=start, name="railguard-sandbox", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]
