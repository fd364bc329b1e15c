"""A threaded TCP server on 127.0.0.1 for test servers that speak HTTP by hand: each
connection calls ``one(rfile, sock)`` until it returns False or the connection fails."""
from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from typing import Any

ServeOne = Callable[[Any, socket.socket], bool]


class LoopbackServer:
    def __init__(self, one: ServeOne, ssl_context: ssl.SSLContext | None = None,
                 poll_interval: float = 0.5) -> None:
        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                if ssl_context is not None:
                    self.request = ssl_context.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                try:
                    while one(self.rfile, self.request):
                        pass
                except (OSError, ValueError):
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(poll_interval,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
