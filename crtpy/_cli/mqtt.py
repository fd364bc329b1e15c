"""``crtpy mqtt pub|sub``: publish or subscribe with crtpy.mqtt5 (default) or crtpy.mqtt (3.1.1).

Plain TCP, TLS (``--tls``, ``--cafile``), mutual TLS (``--cert``/``--key``) and MQTT over
WebSocket (``--websocket``).  ``pub`` connects, publishes and waits for the acknowledgement
(QoS 1); ``sub`` prints each message as it arrives until ``--count`` messages or Ctrl-C,
then disconnects cleanly.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import uuid
from typing import Any, TextIO

from .common import CliError, describe, positive_int, write_bytes

_TIMEOUT = 30.0
_log = logging.getLogger("crtpy.cli")


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mqtt", parents=parents, help="publish or subscribe to an MQTT broker (3.1.1 or 5)",
                       description="MQTT commands: 'crtpy mqtt pub' and 'crtpy mqtt sub'.")
    msub = p.add_subparsers(dest="mqtt_command", metavar="SUBCOMMAND")
    conn = argparse.ArgumentParser(add_help=False)
    g = conn.add_argument_group("connection")
    g.add_argument("--host", "-H", dest="host", default="localhost", help="broker host (default localhost)")
    g.add_argument("--port", "-p", type=positive_int, default=None,
                   help="broker port (default 1883, 8883 with TLS, 80/443 with --websocket)")
    g.add_argument("--mqtt-version", "-V", choices=("3", "5"), default="5", help="protocol: 3 (3.1.1) or 5 (default)")
    g.add_argument("--client-id", "-i", default=None, help="client id (default: a random one)")
    g.add_argument("--username", "-u", default=None, help="user name")
    g.add_argument("--password", "-P", default=None, help="password (or $CRTPY_MQTT_PASSWORD)")
    g.add_argument("--keep-alive", type=positive_int, default=60, metavar="SECONDS",
                   help="keep-alive interval (default 60)")
    g.add_argument("--timeout", type=float, default=_TIMEOUT, metavar="SECONDS",
                   help=f"give up connecting / waiting for an acknowledgement after this long (default {_TIMEOUT:g})")
    t = conn.add_argument_group("TLS and transport")
    t.add_argument("--tls", action="store_true", help="connect with TLS (implied by --cafile/--cert)")
    t.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in this PEM file")
    t.add_argument("--cert", metavar="FILE", help="client certificate (PEM) for mutual TLS; needs --key")
    t.add_argument("--key", metavar="FILE", help="client private key (PEM) for mutual TLS")
    t.add_argument("--insecure", "-k", action="store_true", help="do not verify the broker's certificate")
    t.add_argument("--websocket", action="store_true", help="MQTT over WebSocket (ws:// or wss:// with TLS)")

    pub = msub.add_parser(
        "pub", parents=parents + [conn], help="publish one message",
        description="Connect, publish one message and wait for the broker's acknowledgement (QoS 1).")
    pub.add_argument("--topic", "-t", required=True, help="topic to publish to")
    pub.add_argument("--message", "-m", default=None, help="message payload (text)")
    pub.add_argument("--file", "-f", default=None, metavar="FILE", help="send the contents of FILE as the payload")
    pub.add_argument("--qos", "-q", type=int, choices=(0, 1), default=0, help="QoS 0 or 1 (default 0)")
    pub.add_argument("--retain", "-r", action="store_true", help="ask the broker to retain the message")
    pub.set_defaults(run=run_pub)

    s = msub.add_parser(
        "sub", parents=parents + [conn], help="subscribe and print messages",
        description="Subscribe to one or more topic filters and print each message's payload on its "
                    "own line (with -v: 'topic payload') until --count messages arrived or Ctrl-C.")
    s.add_argument("--topic", "-t", required=True, action="append", help="topic filter (repeatable)")
    s.add_argument("--qos", "-q", type=int, choices=(0, 1), default=0, help="maximum QoS 0 or 1 (default 0)")
    s.add_argument("--count", "-C", type=positive_int, default=None, metavar="N",
                   help="exit after N messages (default: run until Ctrl-C)")
    s.add_argument("--verbose", "-v", action="store_true", help="print the topic before each payload")
    s.set_defaults(run=run_sub)
    p.set_defaults(run=_usage)


def _usage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raise CliError("choose 'pub' or 'sub' (see 'crtpy mqtt --help')", 2)


# --- connection set-up -----------------------------------------------------------------------------

def _tls_ctx(args: argparse.Namespace) -> Any:
    from ..io import ClientTlsContext, TlsContextOptions

    use_tls = args.tls or args.cafile or args.cert or args.key
    if not use_tls:
        return None
    for what, path in (("--cafile", args.cafile), ("--cert", args.cert), ("--key", args.key)):
        if path is not None and not os.path.isfile(path):
            raise CliError(f"{what} {path}: no such file", 2)
    if bool(args.cert) != bool(args.key):
        raise CliError("--cert and --key go together (mutual TLS needs both)", 2)
    if args.cert:
        opts = TlsContextOptions.create_client_with_mtls_from_path(args.cert, args.key)
    else:
        opts = TlsContextOptions()
    if args.cafile:
        opts.override_default_trust_store_from_path(None, args.cafile)
    if args.insecure:
        opts.verify_peer = False
    return ClientTlsContext(opts)


def _port(args: argparse.Namespace, tls: bool) -> int:
    if args.port:
        return int(args.port)
    if args.websocket:
        return 443 if tls else 80
    return 8883 if tls else 1883


def _password(args: argparse.Namespace) -> str | None:
    return args.password if args.password is not None else os.environ.get("CRTPY_MQTT_PASSWORD")


class _Session:
    """One connected client of either protocol version with publish/subscribe/close."""

    def __init__(self, args: argparse.Namespace, on_message: Any = None) -> None:
        self.args = args
        self.timeout = args.timeout
        if self.timeout <= 0:
            raise CliError("--timeout must be positive", 2)
        self.on_message = on_message
        self.client_id = args.client_id or f"crtpy-cli-{uuid.uuid4().hex[:12]}"
        tls_ctx = _tls_ctx(args)
        self.port = _port(args, tls_ctx is not None)
        self.v5 = args.mqtt_version == "5"
        if self.v5:
            self._start5(tls_ctx)
        else:
            self._start311(tls_ctx)

    # MQTT 5 ------------------------------------------------------------------------------------
    def _start5(self, tls_ctx: Any) -> None:
        from .. import mqtt5

        self._connected = threading.Event()
        self._stopped = threading.Event()
        self._failure: BaseException | None = None

        def on_success(data: Any) -> None:
            self._connected.set()

        def on_failure(data: Any) -> None:
            if self._failure is None:
                self._failure = data.exception or CliError("connection refused")
                code = getattr(getattr(data, "connack_packet", None), "reason_code", None)
                if code is not None and int(code) != 0:
                    self._failure = CliError(f"the broker refused the connection: {code.name}")
            self._connected.set()

        def on_publish(data: Any) -> None:
            pkt = data.publish_packet
            if self.on_message is not None and pkt is not None:
                self.on_message(pkt.topic, bytes(pkt.payload or b""))

        transform = None
        if self.args.websocket:
            def transform(transform_args: Any) -> None:
                transform_args.set_done()

        options = mqtt5.ClientOptions(
            host_name=self.args.host, port=self.port, tls_ctx=tls_ctx,
            websocket_handshake_transform=transform,
            connect_options=mqtt5.ConnectPacket(client_id=self.client_id, keep_alive_interval_sec=self.args.keep_alive,
                                                username=self.args.username, password=_password(self.args)),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            on_publish_callback_fn=on_publish,
            on_lifecycle_event_connection_success_fn=on_success,
            on_lifecycle_event_connection_failure_fn=on_failure,
            on_lifecycle_event_stopped_fn=lambda data: self._stopped.set())
        self.client: Any = mqtt5.Client(options)
        self.client.start()
        if not self._wait(self._connected):
            self.close()
            raise CliError(f"no connection to {self.args.host}:{self.port} after {self.timeout:g} s")
        if self._failure is not None:
            failure = self._failure
            self.close()
            raise CliError(f"cannot connect to {self.args.host}:{self.port}: {describe(failure)}")

    # MQTT 3.1.1 --------------------------------------------------------------------------------
    def _start311(self, tls_ctx: Any) -> None:
        from .. import mqtt

        make_client: Any = mqtt.Client
        client = make_client(None, tls_ctx)
        self.conn = mqtt.Connection(
            client, self.args.host, self.port, self.client_id, clean_session=True,
            keep_alive_secs=self.args.keep_alive, username=self.args.username, password=_password(self.args),
            use_websockets=self.args.websocket, ping_timeout_ms=3000)
        try:
            self.conn.connect().result(self.timeout)
        except TimeoutError:
            raise CliError(f"no connection to {self.args.host}:{self.port} after {self.timeout:g} s") from None
        except Exception as e:  # noqa: BLE001
            raise CliError(f"cannot connect to {self.args.host}:{self.port}: {describe(e)}") from None

    # operations --------------------------------------------------------------------------------
    def _wait(self, event: threading.Event) -> bool:
        """Wait in short slices so Ctrl-C reaches the main thread."""
        import time

        deadline = time.monotonic() + self.timeout
        while not event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            event.wait(min(left, 0.2))
        return True

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if self.v5:
            from .. import mqtt5

            result = self.client.publish(mqtt5.PublishPacket(payload=payload, qos=mqtt5.QoS(qos), retain=retain,
                                                             topic=topic)).result(self.timeout)
            puback = getattr(result, "puback", None)
            code = getattr(puback, "reason_code", None)
            if code is not None and int(code) >= 0x80:
                raise CliError(f"the broker rejected the message: {code.name}")
        else:
            from .. import mqtt

            fut, _ = self.conn.publish(topic, payload, mqtt.QoS(qos), retain)
            fut.result(self.timeout)

    def subscribe(self, topics: list[str], qos: int) -> None:
        if self.v5:
            from .. import mqtt5

            suback = self.client.subscribe(mqtt5.SubscribePacket(
                [mqtt5.Subscription(t, mqtt5.QoS(qos)) for t in topics])).result(self.timeout)
            for topic, code in zip(topics, suback.reason_codes or []):
                if int(code) >= 0x80:
                    raise CliError(f"the broker refused the subscription to {topic!r}: {code.name}")
        else:
            from .. import mqtt

            def on_message(topic: str, payload: bytes, **kw: Any) -> None:
                if self.on_message is not None:
                    self.on_message(topic, bytes(payload))

            for t in topics:
                fut, _ = self.conn.subscribe(t, mqtt.QoS(qos), on_message)
                result = fut.result(self.timeout)
                if isinstance(result, dict) and result.get("qos") is None:  # SUBACK 0x80
                    raise CliError(f"the broker refused the subscription to {t!r}")

    def close(self) -> None:
        if self.v5:
            from .. import mqtt5

            client, self.client = self.client, None
            if client is None:
                return
            client.stop(mqtt5.DisconnectPacket())  # a clean DISCONNECT, not just a closed socket
            self._stopped.wait(self.timeout)
            # the client's callbacks refer to this session: drop our side of the cycle so the
            # stopped client can be released as soon as the command returns
            del client
        else:
            try:
                self.conn.disconnect().result(self.timeout)
            except Exception as e:  # noqa: BLE001 - already gone: nothing left to close
                _log.debug("disconnect: %s", e)


# --- commands --------------------------------------------------------------------------------------

def run_pub(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.message is not None and args.file is not None:
        raise CliError("give --message or --file, not both", 2)
    if args.file is not None:
        try:
            with open(args.file, "rb") as f:
                payload = f.read()
        except OSError as e:
            raise CliError(f"cannot read {args.file}: {e.strerror or e}", 2) from None
    elif args.message is not None:
        payload = args.message.encode("utf-8")
    else:
        raise CliError("nothing to publish: give --message TEXT or --file FILE", 2)
    session = _Session(args)
    try:
        session.publish(args.topic, payload, args.qos, args.retain)
    finally:
        session.close()
    return 0


def run_sub(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lock = threading.Lock()
    done = threading.Event()
    received = [0]

    def on_message(topic: str, payload: bytes) -> None:
        with lock:
            if done.is_set():
                return
            line = (topic.encode("utf-8") + b" " if args.verbose else b"") + payload + b"\n"
            write_bytes(out, line)
            try:
                out.flush()
            except (AttributeError, ValueError):
                pass
            received[0] += 1
            if args.count is not None and received[0] >= args.count:
                done.set()

    session = _Session(args, on_message)
    try:
        # Ctrl-C may come while the SUBACK is awaited (a retained message can be printed
        # before it): either way, stop cleanly below.
        try:
            session.subscribe(args.topic, args.qos)
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        session.close()
    return 0
