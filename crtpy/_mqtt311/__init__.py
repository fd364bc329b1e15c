"""MQTT 3.1.1 client internals: the sans-I/O state machine (``core``), its I/O driver on
a loop thread (``driver``) and the WebSocket transport glue (``ws``)."""
