"""Private implementation of crtpy.eventstream: the sans-I/O message codec
(:mod:`.codec`) and the event-stream RPC client state machine (:mod:`.rpc`)."""
