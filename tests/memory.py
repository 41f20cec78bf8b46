"""This process's resident memory, as the memory checks read it (Linux: /proc/self/statm)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os


def resident_bytes() -> int:
    """Pages resident × page size, as they are now (no collection, nothing given back)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim() -> None:
    """The allocator's free pages back to the system (glibc's ``malloc_trim``)."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere, nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def give_memory_back() -> None:
    """Collect what is unreachable and hand the allocator's free pages back to the system."""
    gc.collect()
    trim()


def settled_resident_bytes() -> int:
    """The resident memory of what is still reachable: unreachable objects collected and the
    allocator's free pages given back first, so that a check of growth sees what is kept alive,
    not how fragmented the allocator's pools happen to be (glibc keeps freed pages of its
    per-thread arenas resident: 0–20 MiB from one run of the same loop to the next)."""
    give_memory_back()
    return resident_bytes()
