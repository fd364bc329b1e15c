"""asyncio front-ends of crtpy's clients (``crtpy.aio.http``)."""

__all__ = ["http"]
