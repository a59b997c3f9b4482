"""Read-only release folders for a replica, even when the daemon runs as root.

Sealed artifacts are 0444/0555, which stops any process that is not their owner's or root's. A
daemon running as root (a server install, CI) starts replicas as root unless workload isolation
gives them their own user, and root ignores file modes. So when the daemon may mount, each replica
gets its own mount namespace in which the artifact and its dependency layer are bind-mounted
read-only: a write fails with EROFS ("Read-only file system") whoever the process is. The mounts
are private to that namespace; the host's view is unchanged. Without the privilege, nothing is
done here and the file modes are the protection. Called by :func:`processes.spawn` (the
``preexec_fn`` runs in the child between fork and exec, and only makes syscalls bound beforehand).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

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


def readonly_preexec(paths: tuple[str, ...]) -> Callable[[], None] | None:
    """A ``preexec_fn`` making ``paths`` read-only for the child, or None when it cannot or need not."""
    if not paths or not available():
        return None
    targets = [p.encode() for p in paths if os.path.isdir(p)]
    root, none = b"/", None

    def apply() -> None:
        # Failures are silent on purpose: the child still runs with the file modes' protection, and a
        # preexec_fn that raises would turn a missing kernel feature into a failed deploy.
        if _unshare(_CLONE_NEWNS) != 0:
            return
        if _mount(none, root, none, _MS_REC | _MS_PRIVATE, none) != 0:
            return
        for target in targets:
            if _mount(target, target, none, _MS_BIND | _MS_REC, none) == 0:
                _mount(none, target, none, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, none)
        # subprocess changed into cwd before this hook: that handle still points into the writable mount
        # below the new one, so relative writes would bypass it. Enter the same path again, now read-only.
        try:
            os.chdir(os.getcwd())
        except OSError:
            pass

    return apply
