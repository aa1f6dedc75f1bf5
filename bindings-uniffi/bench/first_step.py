"""Where the time of an in-process call from Python goes (BENCHMARKS.md, issue 14): variants of
IsWorkspaceExists and the pieces of its first step, interleaved (each loop iteration runs every
variant once, so a busy machine slows all alike). Run with the python of the test environment
after scripts/bench-python.sh installed the release package:
    python bindings-uniffi/bench/first_step.py [iterations]
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

import ws_daemon as w
from ws_daemon._ffi import ws_daemon as generated

EXISTS = "/wsdaemon.WorkspaceContentService/IsWorkspaceExists"


async def main(n: int) -> None:
    root = tempfile.mkdtemp(prefix="wsd-py-first-step-")
    d = await w.start(json.dumps({"working_area": f"{root}/a", "storage": {"local_path": f"{root}/s"}}))
    closed = await w.start(json.dumps({"working_area": f"{root}/c", "storage": {"backend": "none"}}))
    await closed.close()
    request = w.IsWorkspaceExistsRequest(id="bench")
    raw = b"\x0a\x05bench"
    blocking = d.blocking()
    uniffi_exists = w.Daemon.is_workspace_exists.__wrapped__  # type: ignore[attr-defined]
    uniffi_call = w.Daemon.call.__wrapped__  # type: ignore[attr-defined]
    record = generated._UniffiFfiConverterTypeIsWorkspaceExistsRequest
    step = generated._UniffiFfiConverterTypeIsWorkspaceExistsStep
    done = generated.IsWorkspaceExistsStep.DONE(w.IsWorkspaceExistsResponse())
    free_daemon = generated._UniffiLib.uniffi_wsd_uniffi_fn_free_daemon
    variants: List[Tuple[str, bool, Callable[[], Any]]] = [
        ("async typed method (the package's coroutine)", True, lambda: d.is_workspace_exists(request)),
        ("async typed, uniffi's own coroutine", True, lambda: uniffi_exists(d, request)),
        ("async call (bytes), the package's coroutine", True, lambda: d.call(EXISTS, raw)),
        ("async call (bytes), uniffi's own coroutine", True, lambda: uniffi_call(d, EXISTS, raw)),
        ("is_workspace_exists_start alone", False, lambda: d.is_workspace_exists_start(request)),
        ("blocking typed method", False, lambda: blocking.is_workspace_exists(request)),
        ("blocking call (bytes)", False, lambda: blocking.call(EXISTS, raw)),
        ("floor: async call that does nothing (close() again)", True, closed.close),
        ("floor: blocking call (is_closed())", False, closed.is_closed),
        ("piece: clone the handle + free it", False,
         lambda: generated._uniffi_rust_call(free_daemon, d._uniffi_clone_handle())),
        ("piece: lower the request record + free its buffer", False, lambda: record.lower(request).free()),
        ("piece: lower a Done step + lift it", False, lambda: step.lift(step.lower(done))),
    ]
    samples: Dict[str, List[float]] = {name: [] for name, _, _ in variants}
    warm = min(500, n)
    for i in range(n + warm):
        for name, is_async, call in variants:
            started = time.perf_counter()
            if is_async:
                await call()
            else:
                call()
            if i >= warm:
                samples[name].append((time.perf_counter() - started) * 1e6)
    await d.close()
    shutil.rmtree(root, ignore_errors=True)
    print("| variant (IsWorkspaceExists) | median µs |")
    print("|---|---|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
