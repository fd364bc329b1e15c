"""Private implementation of :mod:`crtpy.auth`.

Signing (pure, no I/O):
  ``signing``      canonical requests and SigV4 / SigV4a / S3 Express signatures from plain
                   data (:func:`signing.sign` returns the headers to add or the new path,
                   plus the canonical request, string to sign and signature).
  ``sigv4a``       ECDSA P-256 keys derived from credentials (cached), sign / verify.
  ``streaming``    aws-chunked chunk and trailer signing (``ChunkSigner``, frame encoders,
                   ``chunked_length``) and event-stream signing (``EventSigner``), for the
                   S3 client and event-stream RPC: seed them with the request's signature.
  ``sign_request`` ``aws_sign_request``: credentials, body hash, applying the result.

Credentials:
  ``providers``    sources behind ``AwsCredentialsProvider`` (static, environment,
                   delegate, chain, profile, credential_process) and ``CachingSource``.
  ``profile``      the shared config / credentials file parser.
  ``network``      the default chain and the network sources, which use ``httpfetch``
                   (crtpy.http) to reach ``imds``, ``ecs``, ``sts``, ``cognito``, ``x509``.
"""
