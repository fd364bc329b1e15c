"""Private MQTT machinery shared by ``crtpy.mqtt`` (3.1.1) and ``crtpy.mqtt5``.

``codec`` turns packets into bytes and bytes into packets for both protocol versions
(sans-I/O, no sockets); ``client5`` is the MQTT 5 client state machine; ``driver5`` runs
it on a crtpy loop thread.
"""
