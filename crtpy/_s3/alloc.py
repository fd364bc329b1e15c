"""Keeping the C allocator from handing a download's memory back to the kernel.

A GET whose body goes to ``on_body`` receives it into fresh ``bytes`` objects (the user
may keep them), about 256 KiB each, allocated on the loop thread and freed on the
callback worker once ``on_body`` returns.  With glibc's default settings those frees
keep trimming the top of the loop thread's heap (anything above the trim threshold,
128 KiB at start, 512 KiB once a 256 KiB buffer went through mmap), and the next
allocations fault the same pages in again: measured on the 2-CPU VM, 1 GiB from nginx
took 35,000-59,000 minor faults and 0.43-0.47 CPU-s in a fresh process, against
8,000-14,000 faults and 0.29-0.32 CPU-s once the threshold was above the download's
working set (2.2-2.4 -> 2.7-3.1 GB/s).  On a VM whose host takes back freed guest
pages, each of those faults costs a host fault too.

glibc raises both thresholds by itself when a program frees a block it had mmapped
(the mmap threshold becomes that block's size, up to 32 MiB, and the trim threshold
twice that).  :func:`raise_trim_threshold` makes that happen once per process, by
allocating and freeing one block of ``PRIME_BYTES`` that is never touched (``bytes(n)``
is calloc, and fresh mmapped memory needs no zeroing: no page is faulted in).  What a
program did anyway with one large temporary buffer, nothing more: a threshold already
higher is left alone, and so are thresholds set explicitly (``mallopt``,
``GLIBC_TUNABLES``, ``MALLOC_TRIM_THRESHOLD_``), which turn glibc's adjustment off.
Other C libraries ignore it.
"""
from __future__ import annotations

import threading

#: size of the block freed once: glibc then trims a heap only when more than twice this
#: is free at its top (measured: 4 and 16 MiB equally good for 8 MiB parts)
PRIME_BYTES = 8 * 1024 * 1024

_done = False
_lock = threading.Lock()


def raise_trim_threshold() -> None:
    """Once per process: let glibc's dynamic mmap/trim thresholds grow to
    ``PRIME_BYTES`` / twice that (see the module docstring).  Cheap (one mmap and
    munmap, no page touched) and idempotent."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True
        block = bytes(PRIME_BYTES)
        del block
