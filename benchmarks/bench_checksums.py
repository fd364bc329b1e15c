"""Checksum throughput, crtpy next to the reference awscrt, in one process.

    .venv/bin/python benchmarks/bench_checksums.py [--rounds N] [--quick] [--wall]

For each algorithm and buffer size (64 MiB, 4 KiB) both implementations run in
alternating rounds; the best round of each is kept, timed in the benchmark thread's
CPU time (the machine is shared; --wall for wall-clock time).  Prints MB/s and the
ratio crtpy/reference.
Targets: ratio >= 1.0 on 64 MiB and >= 0.8 on 4 KiB.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import awscrt.checksums as ref

import crtpy.checksums as ours
from crtpy import _checksums


def _cases(mod: Any) -> dict[str, Callable[[bytes], Any]]:
    X = mod.XXHash
    return {
        "crc32": mod.crc32,
        "crc32c": mod.crc32c,
        "crc64nvme": mod.crc64nvme,
        "xxhash64": X.compute_xxhash64,
        "xxhash3_64": X.compute_xxhash3_64,
        "xxhash3_128": X.compute_xxhash3_128,
    }


# CPU time of this thread by default: on a shared machine it leaves out the time the
# benchmark spends descheduled (--wall measures wall-clock time instead).
_clock = time.thread_time


def _round(fn: Callable[[bytes], Any], data: bytes, calls: int) -> float:
    start = _clock()
    for _ in range(calls):
        fn(data)
    elapsed = _clock() - start
    return len(data) * calls / elapsed / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    ap.add_argument("--wall", action="store_true", help="time with the wall clock, not thread CPU time")
    args = ap.parse_args()
    global _clock
    if args.wall:
        _clock = time.perf_counter
    rounds = 3 if args.quick else args.rounds
    sizes = [("64MiB", 64 << 20, 1 if args.quick else 2), ("4KiB", 4096, 2000 if args.quick else 5000)]
    ref_cases, our_cases = _cases(ref), _cases(ours)
    print(f"back ends: crc32={_checksums.CRC32_BACKEND} crc32c={_checksums.CRC32C_BACKEND} "
          f"crc64nvme={_checksums.CRC64_BACKEND}")
    print(f"{'algorithm':12s} {'size':>6s} {'crtpy MB/s':>12s} {'awscrt MB/s':>12s} {'ratio':>7s}  target")
    for label, size, calls in sizes:
        data = os.urandom(size)
        target = 1.0 if size > 4096 else 0.8
        for name in our_cases:
            o, r = our_cases[name], ref_cases[name]
            assert o(data) == r(data), name
            best_o = best_r = 0.0
            for _ in range(rounds):
                best_r = max(best_r, _round(r, data, calls))
                best_o = max(best_o, _round(o, data, calls))
            ratio = best_o / best_r
            mark = "ok" if ratio >= target else "MISSED"
            print(f"{name:12s} {label:>6s} {best_o:12.0f} {best_r:12.0f} {ratio:7.2f}  >= {target} {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
