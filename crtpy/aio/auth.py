"""asyncio forms of :mod:`crtpy.auth` (a crtpy extension; awscrt has none).

``await get_credentials(provider)`` and ``await aws_sign_request(request, config)`` run
the synchronous API's work on crtpy's threads and deliver the result on the caller's
running loop.  :class:`AioCredentialsProvider` wraps a provider so that
``await provider.get_credentials()`` reads as on an asyncio-native library.
Cancelling the awaiting task cancels the underlying future (the provider or signer may
still finish its current network request, but its result is dropped).  The synchronous
calls are started on a crtpy worker thread, because a delegate provider runs its user
function inside them and that function may block.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import auth as _auth
from ..auth import AwsCredentials, AwsCredentialsProviderBase, AwsSigningConfig
from ..http import HttpRequest
from ._bridge import wait_future

__all__ = ["AioCredentialsProvider", "aws_sign_request", "get_credentials"]


async def _off_loop(fn: Any, *args: Any) -> Any:
    # The loop's default executor: its workers drop each job once run, so nothing here
    # outlives the call (crtpy's own worker pools keep the last job until they idle out).
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def get_credentials(provider: AwsCredentialsProviderBase) -> AwsCredentials:
    """Fetch credentials from ``provider`` (any crtpy credentials provider)."""
    getter = getattr(provider, "get_credentials", None)
    if not isinstance(provider, AwsCredentialsProviderBase) or getter is None:
        raise TypeError("provider must be a crtpy credentials provider")
    # A delegate provider calls user code synchronously inside get_credentials(), which
    # may block: start the fetch on a worker thread so the caller's loop never waits.
    creds: AwsCredentials = await wait_future(await _off_loop(getter))
    return creds


async def aws_sign_request(http_request: HttpRequest, signing_config: AwsSigningConfig) -> HttpRequest:
    """Sign ``http_request`` in place as :func:`crtpy.auth.aws_sign_request` does, and
    return it once signed."""
    # Started off the loop for the same reason as get_credentials (delegate providers).
    started = await _off_loop(_auth.aws_sign_request, http_request, signing_config)
    signed: HttpRequest = await wait_future(started)
    return signed


class AioCredentialsProvider:
    """An awaitable view of a credentials provider: ``await p.get_credentials()``.

    Build one around any provider (``AioCredentialsProvider(AwsCredentialsProvider.new_default_chain())``)
    or with the same ``new_*`` class methods as :class:`crtpy.auth.AwsCredentialsProvider`
    (``AioCredentialsProvider.new_static(...)``).  The wrapped provider is :attr:`provider`.
    """

    __slots__ = ("provider",)

    def __init__(self, provider: AwsCredentialsProviderBase) -> None:
        if not isinstance(provider, AwsCredentialsProviderBase):
            raise TypeError("provider must be a crtpy credentials provider")
        self.provider = provider

    async def get_credentials(self) -> AwsCredentials:
        """Fetch credentials, on the running loop."""
        return await get_credentials(self.provider)

    if TYPE_CHECKING:  # the factories made below, for type checkers
        @classmethod
        def new_chain(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_cognito(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_default_chain(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_delegate(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_environment(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_process(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_profile(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_static(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

        @classmethod
        def new_x509(cls, *args: Any, **kwargs: Any) -> AioCredentialsProvider: ...

    def __repr__(self) -> str:
        return f"AioCredentialsProvider({type(self.provider).__name__})"


def _make_factory(name: str) -> Any:
    def factory(cls: type[AioCredentialsProvider], *args: Any, **kwargs: Any) -> AioCredentialsProvider:
        return cls(getattr(_auth.AwsCredentialsProvider, name)(*args, **kwargs))

    factory.__name__ = name
    factory.__qualname__ = f"AioCredentialsProvider.{name}"
    factory.__doc__ = f"Wrap :meth:`crtpy.auth.AwsCredentialsProvider.{name}` (same arguments)."
    return classmethod(factory)


for _name in dir(_auth.AwsCredentialsProvider):
    if _name.startswith("new_"):
        setattr(AioCredentialsProvider, _name, _make_factory(_name))
del _name
