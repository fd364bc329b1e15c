"""MQTT 3.1.1 over WebSocket: reuses the MQTT 5 client's WebSocket adapter
(``crtpy._mqtt.ws5.WsAdapter``, which does the opening handshake with ``crtpy._websocket``
and frames MQTT bytes), adapting the handshake transform to the 3.1.1 callback form
``transform(transform_args=mqtt.WebsocketHandshakeTransformArgs(connection, request, future))``.
"""
from __future__ import annotations

import asyncio
from typing import Any


def _transform_for(driver: Any) -> Any:
    user = driver.s["ws_transform"]
    if user is None:
        return None

    def transform(args5: Any) -> None:
        from ..mqtt import WebsocketHandshakeTransformArgs

        done = args5._done_future
        args = WebsocketHandshakeTransformArgs(driver.conn_ref(), args5.http_request, done)
        try:
            user(transform_args=args)
        except BaseException as e:  # noqa: BLE001 - an exception abandons this attempt
            if not done.done():
                args.set_done(e)

    return transform


def make_ws_adapter(driver: Any, inner: asyncio.Protocol) -> asyncio.Protocol:
    from .._mqtt.ws5 import WsAdapter

    s = driver.s
    default_port = 443 if s["tls_ctx"] is not None else 80
    return WsAdapter(inner, s["host"], s["port"], default_port, _transform_for(driver),
                     lambda: None, driver.callbacks.post)
