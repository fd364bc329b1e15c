"""Cross-platform queries about the machine and crtpy's threads."""
from __future__ import annotations

import os

from ._runtime import threads as _threads

__all__ = ["get_cpu_count_for_group", "get_cpu_group_count", "join_all_native_threads"]


def get_cpu_group_count() -> int:
    """Return the number of processor groups (NUMA nodes) of this machine.

    Machines without NUMA information report one group.
    """
    return len(_numa_nodes()) or 1


def get_cpu_count_for_group(group_idx: int) -> int:
    """Return how many processors the processor group ``group_idx`` has."""
    nodes = _numa_nodes()
    if not nodes:
        return (os.cpu_count() or 1) if group_idx == 0 else 0
    if not 0 <= group_idx < len(nodes):
        return 0
    return len(nodes[group_idx])


def join_all_native_threads(*, timeout_sec: float = -1.0) -> bool:
    """Wait for the threads of every released crtpy resource to finish.

    Event-loop threads of groups that are still alive are not waited for, nor are idle
    callback workers (they exit on their own).  Call it from the main thread.

    Args:
        timeout_sec (float): seconds to wait; negative waits without bound.

    Returns:
        bool: True if every such thread finished before the timeout.
    """
    from ._runtime.blocking import retire_idle_workers as retire_io_workers
    from ._runtime.callbacks import retire_idle_workers

    retire_idle_workers()
    retire_io_workers()
    return _threads.join_all(timeout_sec, ignore=_is_owned_by_living_group)


def _is_owned_by_living_group(thread: object) -> bool:
    from ._runtime.loop import is_thread_of_living_loop

    return is_thread_of_living_loop(thread)


def _numa_nodes() -> list[list[int]]:
    base = "/sys/devices/system/node"
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("node") and n[4:].isdigit())
    except OSError:
        return []
    nodes = []
    for name in sorted(names, key=lambda n: int(n[4:])):
        try:
            with open(f"{base}/{name}/cpulist") as f:
                nodes.append(_parse_cpulist(f.read().strip()))
        except OSError:
            continue
    return nodes


def _parse_cpulist(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus
