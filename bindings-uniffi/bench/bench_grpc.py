"""Latency of the same calls from Python: in-process (ws_daemon) against grpcio over TCP to the
ws-daemon server, same run. Run by scripts/bench-python.sh (release builds); alone:
    WSD_BIN=<target>/release/ws-daemon python bench_grpc.py [calls]
IsWorkspaceExists of an unknown id, and WorkspaceState of a workspace that exists; each in-process
through the typed method and through `call` with protobuf bytes, awaited on an asyncio loop and
with the blocking twin (`Daemon.blocking()`); over gRPC with the same bytes (grpcio's generic unary
call, no generated stubs), with the blocking client and with grpc.aio (what an asyncio program
uses).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable, Dict, List

import grpc

import ws_daemon as w

EXISTS = "/wsdaemon.WorkspaceContentService/IsWorkspaceExists"
INIT = "/wsdaemon.WorkspaceContentService/InitWorkspace"
STATE = "/wsdaemon.WorkspaceContentExt/WorkspaceState"


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (the requests here are strings and messages only)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def init_bytes(id: str) -> bytes:
    metadata = field(1, b"owner-1") + field(2, b"bench-meta")
    return field(1, id.encode()) + field(2, metadata) + field(3, field(1, b""))


def stats(samples: List[float], total: float) -> Dict[str, float]:
    samples.sort()
    return {
        "median": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99)],
        "per_second": len(samples) / total,
    }


async def measure_async(n: int, call: Callable[[], Awaitable[object]]) -> Dict[str, float]:
    for _ in range(min(1000, n)):
        await call()
    samples = [0.0] * n
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        await call()
        samples[i] = (time.perf_counter() - t) * 1e6
    return stats(samples, time.perf_counter() - start)


def measure_sync(n: int, call: Callable[[], object]) -> Dict[str, float]:
    for _ in range(min(1000, n)):
        call()
    samples = [0.0] * n
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        call()
        samples[i] = (time.perf_counter() - t) * 1e6
    return stats(samples, time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(calls: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="wsd-py-bench-"))
    port = free_port()
    (root / "server.toml").write_text(
        f'working_area = "{root}/server/area"\n[storage]\nlocal_path = "{root}/server/storage"\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = ""\n'
    )
    server = subprocess.Popen(
        [os.environ.get("WSD_BIN", "ws-daemon"), "--config", str(root / "server.toml")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    aio_channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    d = await w.start(json.dumps({"working_area": f"{root}/local/area", "storage": {"local_path": f"{root}/local/storage"}}))
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        # Raw bytes in and out: no serializers, so both sides send the very same request bytes.
        exists_rpc = channel.unary_unary(EXISTS)
        state_rpc = channel.unary_unary(STATE)
        exists_aio = aio_channel.unary_unary(EXISTS)
        state_aio = aio_channel.unary_unary(STATE)
        channel.unary_unary(INIT)(init_bytes("bench-ws"), timeout=30)
        await d.call(INIT, init_bytes("bench-ws"))

        exists = field(1, b"bench")
        state = field(1, b"bench-ws")
        assert exists_rpc(exists, timeout=5) == await d.call(EXISTS, exists) == b""
        assert state_rpc(state, timeout=5) == await d.call(STATE, state) == b"\x08\x02"  # AVAILABLE
        assert await state_aio(state, timeout=5) == b"\x08\x02"

        blocking = d.blocking()
        typed_exists = w.IsWorkspaceExistsRequest(id="bench")
        typed_state = w.WorkspaceStateRequest(id="bench-ws")
        remote_calls = min(calls, 5000)
        rows = [
            ("IsWorkspaceExists", "in-process, typed method", await measure_async(calls, lambda: d.is_workspace_exists(typed_exists))),
            ("IsWorkspaceExists", "in-process, protobuf bytes (call)", await measure_async(calls, lambda: d.call(EXISTS, exists))),
            ("IsWorkspaceExists", "in-process, blocking typed method", measure_sync(calls, lambda: blocking.is_workspace_exists(typed_exists))),
            ("IsWorkspaceExists", "in-process, blocking call (bytes)", measure_sync(calls, lambda: blocking.call(EXISTS, exists))),
            ("IsWorkspaceExists", "grpcio over TCP to ws-daemon", measure_sync(remote_calls, lambda: exists_rpc(exists, timeout=5))),
            ("IsWorkspaceExists", "grpc.aio over TCP to ws-daemon", await measure_async(remote_calls, lambda: exists_aio(exists, timeout=5))),
            ("WorkspaceState", "in-process, typed method", await measure_async(calls, lambda: d.workspace_state(typed_state))),
            ("WorkspaceState", "in-process, protobuf bytes (call)", await measure_async(calls, lambda: d.call(STATE, state))),
            ("WorkspaceState", "in-process, blocking typed method", measure_sync(calls, lambda: blocking.workspace_state(typed_state))),
            ("WorkspaceState", "in-process, blocking call (bytes)", measure_sync(calls, lambda: blocking.call(STATE, state))),
            ("WorkspaceState", "grpcio over TCP to ws-daemon", measure_sync(remote_calls, lambda: state_rpc(state, timeout=5))),
            ("WorkspaceState", "grpc.aio over TCP to ws-daemon", await measure_async(remote_calls, lambda: state_aio(state, timeout=5))),
        ]
        # Where the in-process time goes: uniffi's floor for an async call from asyncio (a daemon
        # already closed answers at once, no work, no thread hop) and for a blocking one.
        closed = await w.start(json.dumps({"working_area": f"{root}/closed/area", "storage": {"backend": "none"}}))
        await closed.close()
        # And uniffi's own coroutine of the typed method (what the package's method was before it
        # returned at once for a call done on its first poll; still its `__wrapped__`).
        uniffi_exists = w.Daemon.is_workspace_exists.__wrapped__
        floor = [
            ("uniffi floor", "an async call that does nothing (close() again)", await measure_async(calls, closed.close)),
            ("uniffi floor", "a blocking call (is_closed())", measure_sync(calls, closed.is_closed)),
            ("uniffi async", "IsWorkspaceExists through uniffi's own coroutine (`__wrapped__`)",
             await measure_async(calls, lambda: uniffi_exists(d, typed_exists))),
        ]
    finally:
        channel.close()
        await aio_channel.close()
        await d.close()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)

    print("| call from Python | median µs | p99 µs | calls/s (sequential) |")
    print("|---|---|---|---|")
    for rpc, how, s in rows:
        print(f"| {rpc}, {how} | {s['median']:.1f} | {s['p99']:.1f} | {s['per_second']:.0f} |")
    for rpc, how, s in floor:
        print(f"| {rpc}: {how} | {s['median']:.1f} | {s['p99']:.1f} | {s['per_second']:.0f} |")
    print()
    for i in (0, 6):
        grpc_sync, grpc_aio = rows[i + 4][2]["median"], rows[i + 5][2]["median"]
        for local_row in rows[i : i + 4]:
            local = local_row[2]["median"]
            print(f"{rows[i][0]}, {local_row[1]}: grpcio / in-process {grpc_sync / local:.1f}x, "
                  f"grpc.aio / in-process {grpc_aio / local:.1f}x")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
