"""Signing throughput, crtpy vs the reference awscrt, side by side in one process.

    .venv/bin/python benchmarks/bench_auth.py [--seconds N]

Measures whole ``aws_sign_request(...).result()`` calls (a new request each time, one
config reused; the last row also makes a new config, dated now, for every request) for a typical S3 GET with
SigV4 headers, and for SigV4a.  Prints signs/second for both and the ratio crtpy/reference.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import time
from collections.abc import Callable
from typing import Any


def _s3_get(auth: Any, http: Any, algorithm: Any, provider: Any, fresh_config: bool = False) -> Callable[[], Any]:
    date = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
    region = "us-east-1" if algorithm == auth.AwsSigningAlgorithm.V4 else "*"
    Config = auth.AwsSigningConfig
    unsigned = auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD
    sha_header = auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256

    def make_config() -> Any:
        # date=None: "now", as an application signing each request with a fresh config does
        return Config(algorithm=algorithm, credentials_provider=provider, region=region, service="s3",
                      date=None if fresh_config else date, use_double_uri_encode=False,
                      should_normalize_uri_path=False, signed_body_value=unsigned,
                      signed_body_header_type=sha_header)

    config = make_config()
    HttpRequest, HttpHeaders = http.HttpRequest, http.HttpHeaders
    sign = auth.aws_sign_request

    def one() -> Any:
        req = HttpRequest("GET", "/photos/2024/05/holiday%20pic.jpg?versionId=3HL4kqtJlcpXroDTDmJ", HttpHeaders([
            ("Host", "examplebucket.s3.us-east-1.amazonaws.com"),
            ("User-Agent", "aws-sdk-python/1.0"),
            ("Range", "bytes=0-1048575"),
            ("Accept", "*/*"),
        ]))
        return sign(req, make_config() if fresh_config else config).result()

    return one


def _interleaved(ours: Callable[[], Any], ref: Callable[[], Any], seconds: float,
                 batch: int = 50) -> tuple[float, float]:
    """Signs/second of both, measured in alternating small batches so that load from
    other processes on the machine hits both alike."""
    for _ in range(200):
        ours()
        ref()
    gc.collect()
    t_ours = t_ref = 0.0
    n = 0
    deadline = time.perf_counter() + 2 * seconds
    clock = time.perf_counter
    while clock() < deadline:
        t0 = clock()
        for _ in range(batch):
            ours()
        t1 = clock()
        for _ in range(batch):
            ref()
        t2 = clock()
        t_ours += t1 - t0
        t_ref += t2 - t1
        n += batch
    return n / t_ours, n / t_ref


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best rate of each side is kept")
    args = parser.parse_args()

    import awscrt.auth as ref_auth
    import awscrt.http as ref_http

    from crtpy import auth, http

    akid, secret, token = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "SESSIONTOKEN" * 20
    cases = (("SigV4 headers, S3 GET", "V4", False), ("SigV4a headers, S3 GET", "V4_ASYMMETRIC", False),
             ("SigV4, new config each", "V4", True))
    for label, alg_name, fresh in cases:
        ours = _s3_get(auth, http, getattr(auth.AwsSigningAlgorithm, alg_name),
                       auth.AwsCredentialsProvider.new_static(akid, secret, token), fresh)
        ref = _s3_get(ref_auth, ref_http, getattr(ref_auth.AwsSigningAlgorithm, alg_name),
                      ref_auth.AwsCredentialsProvider.new_static(akid, secret, token), fresh)
        rounds = [_interleaved(ours, ref, args.seconds) for _ in range(args.rounds)]
        best_ours = max(r[0] for r in rounds)
        best_ref = max(r[1] for r in rounds)
        ratios = sorted(r[0] / r[1] for r in rounds)
        print(f"{label:26s} crtpy {best_ours:10.0f}/s   awscrt {best_ref:10.0f}/s   "
              f"ratio {best_ours / best_ref:5.2f}  (median per-round ratio {ratios[len(ratios) // 2]:.2f})")


if __name__ == "__main__":
    main()
