"""Private implementation of :mod:`crtpy.auth`.

``signing`` builds canonical requests and SigV4 / SigV4a / S3 Express signatures from plain
data (method, path, header pairs, payload hash); ``sigv4a`` derives and caches the ECDSA
P-256 keys; ``streaming`` signs aws-chunked payload chunks, trailers and event-stream
events; ``credentials`` and ``providers`` hold the credentials types and their sources;
``profile`` parses the shared config and credentials files.
"""
