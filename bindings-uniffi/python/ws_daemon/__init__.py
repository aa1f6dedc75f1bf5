"""The workspace daemon in-process (wsd-uniffi).

    import asyncio, json, ws_daemon

    async def main():
        d = await ws_daemon.start(json.dumps({"working_area": "/tmp/area"}))
        ...
        await d.close()

`Daemon`'s calls are coroutines that never block the event loop; a failed call raises
`WsdError` (its `.code` is the gRPC status name, e.g. "NOT_FOUND"; `.reason` a stable id).
The names come from the module uniffi generates (ws_daemon._ffi), re-exported here.

The coroutine methods (`call`, `call_json` and one per RPC) are replaced here by a faster form of
the same call: the library's `<name>_start` runs the call on the calling thread until its first
wait, as uniffi's async call does, and answers either the response, which the coroutine returns
without a turn of the event loop, or the rest of the call, whose `wait()` the coroutine awaits
(uniffi's async protocol: the event loop keeps running, and cancelling the awaiting task cancels
the call). uniffi's own coroutine stays as the method's `__wrapped__` (its signature and type
hints are the method's). Values that go through Rust buffers are moved by `_buffers` (the
generated encodings, fewer steps).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Coroutine, List

from . import _buffers
from ._ffi import ws_daemon as _generated
from ._ffi.ws_daemon import *  # noqa: F401,F403
from ._ffi.ws_daemon import __all__ as _generated_all

# Records, enums, errors and strings move through Rust buffers in one copy each way.
_FAST_BUFFERS = _buffers.install(_generated)

_START = "_start"


def _from_start(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The coroutine method `name` of `Daemon` made of `<name>_start` and the rest's `wait()`."""
    start = getattr(_generated.Daemon, name + _START)
    uniffi_method = getattr(_generated.Daemon, name)

    @functools.wraps(uniffi_method)
    async def method(self: Any, request: Any, timeout_ms: int = 0) -> Any:
        step = start(self, request, timeout_ms)
        if step.is_DONE():
            return step.response
        return await step.rest.wait()

    return method


def _generic_from_start(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """`_from_start` for the generic calls, which take the method's path first. `call_start`
    borrows its request, which must be `bytes`; `call` takes any bytes-like object, as before."""
    start = getattr(_generated.Daemon, name + _START)
    uniffi_method = getattr(_generated.Daemon, name)
    borrows_bytes = name == "call"

    @functools.wraps(uniffi_method)
    async def method(self: Any, method: str, request: Any, timeout_ms: int = 0) -> Any:
        if borrows_bytes and type(request) is not bytes:
            request = bytes(memoryview(request))
        step = start(self, method, request, timeout_ms)
        if step.is_DONE():
            return step.response
        return await step.rest.wait()

    return method


def _fast_coroutines() -> List[str]:
    """Replaces every coroutine method of `Daemon` that has a `_start` step; answers their names."""
    names = sorted(n[: -len(_START)] for n in vars(_generated.Daemon) if n.endswith(_START))
    for name in names:
        make = _generic_from_start if name in ("call", "call_json") else _from_start
        setattr(_generated.Daemon, name, make(name))
    return names


_FAST_COROUTINES = _fast_coroutines()


async def _next_report(self: Any) -> Any:
    report = await self.next()
    if report is None:
        raise StopAsyncIteration
    return report


# `async for report in d.watch_progress(ProgressRequest(id=...)):` reads the stream to its end.
_generated.ProgressStream.__aiter__ = lambda self: self  # type: ignore[attr-defined]
_generated.ProgressStream.__anext__ = _next_report  # type: ignore[attr-defined]

# The steps and the rests of calls are the fast path's building blocks, not the API.
__all__ = [n for n in _generated_all if not (n.endswith("Step") or n.startswith("Pending"))]
