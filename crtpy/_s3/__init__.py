"""The engine of crtpy.s3.

- :mod:`.client`    -- client-wide state: loop thread, connection pools, limits, retries, signing.
- :mod:`.conn`      -- keep-alive HTTP/1.1 connections (httptools) and the pool per endpoint.
- :mod:`.meta`      -- meta requests: parallel ranged GETs, multipart uploads, DEFAULT requests.
- :mod:`.checksums` -- per-algorithm hashers, header/XML names, CRC combination.
- :mod:`.xml`       -- the few S3 XML documents (lenient parsing, CompleteMultipartUpload).
- :mod:`.cli`       -- ``crtpy s3 cp`` (:func:`crtpy._s3.cli.s3_cp`).
- :mod:`.demo`      -- the moto round-trip demo (:func:`crtpy._s3.demo.run_demo`).
"""
