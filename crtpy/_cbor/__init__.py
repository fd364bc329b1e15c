"""Private CBOR (RFC 8949) engine behind :mod:`crtpy.cbor`.

``encoder``  -- the encoder: one bytearray, precompiled struct packers, a whole-item writer.
``decoder``  -- the decoder: a peek/pop state machine that mirrors the reference runtime's
               element-by-element decoder, plus a fast whole-item decoder that hands any
               irregular input over to the exact element-by-element path.
``errors``   -- how CBOR errors are raised (names and codes from :mod:`crtpy._errors`).
"""
