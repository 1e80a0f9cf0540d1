"""No ra equivalent (the BEAM hosts every ra server in one OS process; here each is its own, so
identical pages are duplicated per process): opt-in kernel same-page merging (KSM) of a process
tree.

A forked child shares its parent's pages until it writes to them; CPython writes reference
counts into nearly every object it touches, so an idle server process ends up holding private
copies of pages that are byte for byte the same in every server of the node. KSM merges such
pages back into one copy-on-write page.

Contracts:

* :func:`enable` marks the calling process (``PR_SET_MEMORY_MERGE``, Linux >= 6.4): every
  anonymous page it has or will have may be merged, and every child it forks inherits the mark.
  It raises :class:`OSError` where the kernel lacks the call; it changes nothing else.
* Nothing is merged while KSM is off machine-wide (``/sys/kernel/mm/ksm/run`` is not ``1``):
  that switch, and how fast ``ksmd`` scans (``pages_to_scan``, ``sleep_millisecs``), belong to
  the machine's administrator. :func:`machine_state` reads it, without changing it.
* Merged pages are shared with *every* process of the machine that is marked too, of any user:
  a process that can time its own writes can tell whether a page of given content exists
  elsewhere. Enable it only where every marked process is trusted.
"""
from __future__ import annotations

import ctypes
import errno
import os

__all__ = ["enable", "enabled", "machine_state", "KSM_RUN"]

_PR_SET_MEMORY_MERGE = 67
_PR_GET_MEMORY_MERGE = 68
#: the machine-wide switch: ``1`` merges, ``0`` stops, ``2`` unmerges everything
KSM_RUN = "/sys/kernel/mm/ksm/run"

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int


def enable() -> None:
    """Mark this process (and the children it will fork) for merging. Raises :class:`OSError`
    (``EINVAL``: a kernel older than 6.4, or one without KSM) if the kernel refuses."""
    if _prctl(_PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno() or errno.EINVAL
        raise OSError(err, f"PR_SET_MEMORY_MERGE: {os.strerror(err)} (KSM needs Linux >= 6.4 "
                           "built with CONFIG_KSM)")


def enabled(pid: int | None = None) -> bool:
    """Whether ``pid`` (default: this process) is marked for merging; False where the kernel
    cannot say."""
    if pid is None or pid == os.getpid():
        return bool(_prctl(_PR_GET_MEMORY_MERGE, 0, 0, 0, 0) == 1)
    try:
        with open(f"/proc/{pid}/ksm_stat") as f:
            return any(line.split() == ["ksm_merge_any:", "yes"] for line in f)
    except OSError:
        return False


def machine_state() -> str | None:
    """The content of :data:`KSM_RUN` (``"1"``: merging), or None where it cannot be read."""
    try:
        with open(KSM_RUN) as f:
            return f.read().strip()
    except OSError:
        return None
