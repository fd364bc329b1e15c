"""crtpy's runtime core: event-loop threads, the callback dispatcher, futures, fork
handling, a blocking-work pool and the shared retry/backoff helper.

Every protocol module builds on these pieces and on nothing else for threads:

- :mod:`.loop`      -- ``LoopThread``: one asyncio loop (uvloop when available) on a daemon thread.
- :mod:`.callbacks` -- ``CallbackQueue``: runs user callbacks in order, off the loop thread.
- :mod:`.futures`   -- ``CrtFuture`` and the coroutine-to-future bridge.
- :mod:`.blocking`  -- ``run_blocking``: file I/O and hashing off the loop thread.
- :mod:`.fork`      -- process generation, reset hooks for the child after ``os.fork()``.
- :mod:`.threads`   -- registry of crtpy's threads, for ``join_all_native_threads``.
- :mod:`.backoff`   -- the one exponential backoff with jitter, used by every retry loop.
- :mod:`.logs`      -- one Python logger per subsystem under ``crtpy`` (``get_logger("mqtt5")``).
"""
