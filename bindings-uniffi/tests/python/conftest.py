"""Fixtures of the Python tests of ws_daemon (the in-process daemon through uniffi).

Run by bindings-uniffi/test.sh, which builds and installs the package into a virtual environment
first. Each test is a plain function that runs its coroutine with `asyncio.run` (no plugin).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterator, Optional, TypeVar

import pytest

import ws_daemon

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[3]
TARGET = Path(
    os.environ.get("CARGO_TARGET_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ws-daemon" / "target"
)
# Each RPC's path by its name (the first, for WorkspaceInfo, which two services have).
PATHS: Dict[str, str] = {}
for _m in ws_daemon.methods():
    PATHS.setdefault(_m.name, _m.path)


def run(coro: Awaitable[T]) -> T:
    """Runs one test's coroutine on a fresh event loop."""
    return asyncio.run(coro)  # type: ignore[arg-type]


def config(root: Path, **extra: Any) -> str:
    """A daemon configuration (JSON, snake_case) on `root`: working area and local storage."""
    cfg: Dict[str, Any] = {
        "working_area": str(root / "area"),
        "storage": {"local_path": str(root / "storage")},
        "limits": {"shutdown_grace_secs": 1},
    }
    cfg.update(extra)
    return json.dumps(cfg)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary folder, removed after the test."""
    d = Path(tempfile.mkdtemp(prefix="wsd-py-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(scratch: Path) -> Iterator[ws_daemon.Daemon]:
    """A daemon on a temporary working area with local storage, closed after the test."""
    d = ws_daemon.Daemon(config(scratch))
    try:
        yield d
    finally:
        run(d.close())


async def call(
    d: ws_daemon.Daemon, method: str, request: Dict[str, Any], timeout_ms: int = 0
) -> Dict[str, Any]:
    """A call in the proto3 JSON mapping; `method` is a full path or an RPC's name."""
    path = method if method.startswith("/") else PATHS[method]
    return json.loads(await d.call_json(path, json.dumps(request), timeout_ms))


def init_request(id: str, meta_id: str, initializer: Optional[Dict[str, Any]] = None, **extra: Any) -> Dict[str, Any]:
    return {
        "id": id,
        "metadata": {"owner": "owner-1", "metaId": meta_id},
        "initializer": initializer if initializer is not None else {"empty": {}},
        **extra,
    }


def init(id: str, meta_id: str, initializer: Optional[ws_daemon.WorkspaceInitializer] = None, **extra: Any) -> ws_daemon.InitWorkspaceRequest:
    """A typed InitWorkspace request of owner-1 (an empty workspace unless `initializer`)."""
    return ws_daemon.InitWorkspaceRequest(
        id=id,
        metadata=ws_daemon.WorkspaceMetadata(owner="owner-1", meta_id=meta_id),
        initializer=initializer or ws_daemon.WorkspaceInitializer(empty=ws_daemon.EmptyInitializer()),
        **extra,
    )


def snapshot_tree(root: Path, skip: tuple = (".gitpod",)) -> Dict[str, Dict[str, Any]]:
    """Every entry below `root`: mode, mtime (ns), and the content hash or link target."""
    out: Dict[str, Dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel in skip or rel.split("/")[0] in skip:
                continue
            st = path.lstat()
            entry: Dict[str, Any] = {"mode": st.st_mode & 0o7777, "mtime_ns": st.st_mtime_ns}
            if path.is_symlink():
                entry["link"] = os.readlink(path)
            elif path.is_dir():
                entry["dir"] = True
            else:
                entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = entry
        dirnames[:] = [n for n in dirnames if not (Path(dirpath) / n).is_symlink()]
    return out


def populate(root: Path) -> None:
    """A small tree: nested folders, an empty one, binary data, an executable, a symlink, times."""
    (root / "src/nested/deep").mkdir(parents=True)
    (root / "empty/dir").mkdir(parents=True)
    (root / "README.md").write_text("# hi\n")
    (root / "src/main.rs").write_text("fn main() {}\n")
    (root / "src/nested/deep/data.bin").write_bytes(os.urandom(200_000))
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "private.txt").write_text("secret\n")
    (root / "private.txt").chmod(0o600)
    (root / "name with spaces.txt").write_text("x")
    (root / "link").symlink_to("src/main.rs")
    os.utime(root / "README.md", ns=(1_700_000_000_123_456_000, 1_700_000_000_654_321_000))


async def raises(coro: Awaitable[Any], code: str, reason: Optional[str] = None) -> ws_daemon.WsdError:
    """Awaits `coro`, which must raise a WsdError with `code` (and `reason`, when given)."""
    try:
        result = await coro
    except ws_daemon.WsdError as e:
        assert e.code == code, f"{e.code} ({e.reason}): {e.message}"
        assert e.message, "a message"
        assert re.fullmatch(r"[a-z_]+", e.reason), f"reason {e.reason!r}"
        if reason is not None:
            assert e.reason == reason, f"{e.reason}: {e.message}"
        return e
    raise AssertionError(f"expected {code}, got a result: {result!r}")


class Ticker:
    """Measures the event loop's largest stall: a coroutine that sleeps 5 ms at a time and notes the
    longest gap between two of its wake-ups (a call that blocked the loop would show as a gap as
    long as the call)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.max_gap = 0.0
        self._task: Optional[asyncio.Task] = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    async def __aenter__(self) -> "Ticker":
        self._task = asyncio.ensure_future(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def binary(name: str, env: Optional[str] = None) -> Path:
    """A binary of the debug build (or `$env`)."""
    if env and os.environ.get(env):
        return Path(os.environ[env])
    path = TARGET / "debug" / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: cargo build --workspace first (bindings-uniffi/test.sh does)")
    return path


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def start_process(args: list, pattern: str, log: Path, timeout: float = 30.0, **kwargs: Any) -> "tuple[subprocess.Popen, re.Match]":
    """Starts a server with its output going to `log` and waits for `pattern` in it; the process
    and the match."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = log.read_text(errors="replace")
        m = re.search(pattern, seen)
        if m:
            return proc, m
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{Path(args[0]).name} did not start: {seen}")
