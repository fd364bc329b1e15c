"""Private machinery of :mod:`crtpy.mqtt_request_response`.

* :mod:`.topics` — topic and topic-filter checks and matching;
* :mod:`.tokens` — finding a correlation token in a JSON payload by a dotted path;
* :mod:`.subscriptions` — the sans-I/O subscription manager (shared, reference-counted
  subscriptions within the request-response and streaming budgets);
* :mod:`.engine` — the request/response correlation engine and streaming operations,
  driven on one event-loop thread over a protocol adapter;
* :mod:`.adapters` — the adapters over ``crtpy.mqtt5.Client`` and ``crtpy.mqtt.Connection``.
"""
