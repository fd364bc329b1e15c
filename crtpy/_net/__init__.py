"""crtpy's private network layer.

Every connection crtpy makes goes through :mod:`crtpy._net.connect`: host resolution
(:mod:`.resolver`), TCP connect with the socket options, and the TLS handshake with a
Python ``ssl.SSLContext`` built from ``crtpy.io.TlsContextOptions`` (:mod:`.tls`).
Errors are mapped to the reference runtime's error names by :mod:`.errors`.
The coroutines run on any asyncio loop (a crtpy loop thread or the user's own loop).
"""
