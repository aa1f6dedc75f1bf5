"""The workspace daemon in-process (wsd-uniffi).

    import asyncio, json, ws_daemon

    async def main():
        d = await ws_daemon.start(json.dumps({"working_area": "/tmp/area"}))
        ...
        await d.close()

`Daemon`'s calls are coroutines that never block the event loop; a failed call raises
`WsdError` (its `.code` is the gRPC status name, e.g. "NOT_FOUND"; `.reason` a stable id).
The names come from the module uniffi generates (ws_daemon._ffi), re-exported here.
"""

from ._ffi.ws_daemon import *  # noqa: F401,F403
from ._ffi.ws_daemon import __all__ as _generated_all

__all__ = list(_generated_all)
