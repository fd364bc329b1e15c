"""Private WebSocket machinery behind :mod:`crtpy.websocket`.

* :mod:`.frames` - frame header encoding/decoding helpers and masking (pure functions).
* :mod:`.handshake` - the opening handshake: key/accept computation, request encoding,
  an incremental HTTP response parser (sans-I/O).
* :mod:`.core` - the client connection state machine (sans-I/O: bytes in, events and
  bytes out).
* :mod:`.driver` - runs a core over a crtpy network connection on a loop thread and
  delivers events to user callbacks through a :class:`CallbackQueue`.
"""
