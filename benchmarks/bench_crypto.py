"""Hash and HMAC throughput, crtpy next to the reference awscrt, in one process.

    .venv/bin/python benchmarks/bench_crypto.py [--rounds N] [--quick] [--wall]

One operation is a whole computation: create, update(buffer), digest().  Buffers of
64 MiB, 4 KiB and 64 B; both implementations run in alternating rounds and the best
round of each is kept, timed in the benchmark thread's CPU time (the machine is shared;
--wall for wall-clock time).  Prints MB/s, ops/s and the ratio
crtpy/reference (target >= 1.0).

awscrt 0.38.0's HMAC cannot run (its native hmac_update/hmac_digest are missing, the
first update raises AttributeError), so HMAC has no reference figure; crtpy's HMAC is
shown next to the standard library's one-shot ``hmac.digest`` for scale.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import awscrt.crypto as ref

import crtpy.crypto as ours

KEY = b"k" * 32


def _hash_op(factory: Callable[[], Any]) -> Callable[[bytes], bytes]:
    def op(data: bytes) -> bytes:
        h = factory()
        h.update(data)
        return h.digest()

    return op


def _hmac_op(mod: Any) -> Callable[[bytes], bytes]:
    new = mod.HMAC.sha256_hmac_new

    def op(data: bytes) -> bytes:
        h = new(KEY)
        h.update(data)
        return h.digest()

    return op


def _ref_hmac_works() -> bool:
    try:
        _hmac_op(ref)(b"x")
        return True
    except (AttributeError, RuntimeError):
        return False


# CPU time of this thread by default: on a shared machine it leaves out the time the
# benchmark spends descheduled (--wall measures wall-clock time instead).
_clock = time.thread_time


def _round(fn: Callable[[bytes], Any], data: bytes, calls: int) -> float:
    start = _clock()
    for _ in range(calls):
        fn(data)
    return calls / (_clock() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    ap.add_argument("--wall", action="store_true", help="time with the wall clock, not thread CPU time")
    args = ap.parse_args()
    global _clock
    if args.wall:
        _clock = time.perf_counter
    rounds = 2 if args.quick else args.rounds
    scale = 0.25 if args.quick else 1.0
    sizes = [("64MiB", 64 << 20, 1), ("4KiB", 4096, int(10000 * scale)), ("64B", 64, int(50000 * scale))]
    cases: list[tuple[str, Callable[[bytes], Any], Callable[[bytes], Any] | None]] = [
        ("md5", _hash_op(ours.Hash.md5_new), _hash_op(ref.Hash.md5_new)),
        ("sha1", _hash_op(ours.Hash.sha1_new), _hash_op(ref.Hash.sha1_new)),
        ("sha256", _hash_op(ours.Hash.sha256_new), _hash_op(ref.Hash.sha256_new)),
        ("hmac-sha256", _hmac_op(ours), _hmac_op(ref) if _ref_hmac_works() else None),
    ]
    print(f"{'algorithm':12s} {'size':>6s} {'crtpy MB/s':>11s} {'crtpy op/s':>11s} "
          f"{'awscrt MB/s':>11s} {'awscrt op/s':>11s} {'ratio':>6s}")
    for label, size, calls in sizes:
        data = os.urandom(size)
        for name, mine, theirs in cases:
            if theirs is not None:
                assert mine(data) == theirs(data), name
            best_m = best_t = 0.0
            for _ in range(rounds):
                if theirs is not None:
                    best_t = max(best_t, _round(theirs, data, calls))
                best_m = max(best_m, _round(mine, data, calls))
            if theirs is not None:
                ratio = f"{best_m / best_t:6.2f}"
                ref_cols = f"{best_t * size / 1e6:11.1f} {best_t:11.0f}"
            else:
                ratio = "   n/a"
                ref_cols = f"{'(broken)':>11s} {'':>11s}"
            print(f"{name:12s} {label:>6s} {best_m * size / 1e6:11.1f} {best_m:11.0f} {ref_cols} {ratio}")
        # Scale for HMAC: the standard library's one-shot C path.
        best_s = 0.0
        for _ in range(rounds):
            best_s = max(best_s, _round(lambda d: hmac.digest(KEY, d, hashlib.sha256), data, calls))
        print(f"{'  (stdlib hmac.digest)':24s} {best_s * size / 1e6:8.1f} MB/s {best_s:11.0f} op/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
