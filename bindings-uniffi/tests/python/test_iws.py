"""The in-workspace service when Python hosts the daemon (as root): ws_daemon serves the
workspace's own socket from inside this Python process, and a process inside a stand-in container
(unshare: new PID, mount and network namespaces) calls it with the iws-client binary; the same
call from the host is refused, and in-process (no caller at all) it is FAILED_PRECONDITION."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import ws_daemon
from conftest import Ticker, binary, call, config, init, raises, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")


@pytest.fixture
def container() -> Iterator[int]:
    """`sleep` as PID 1 of new PID, mount and network namespaces with private propagation, sharing
    the host's root folder; the host PID of that init."""
    unshare = subprocess.Popen(
        ["unshare", "--fork", "--pid", "--mount", "--net", "--propagation", "private", "--kill-child",
         "--mount-proc", "sleep", "600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    init = 0
    try:
        children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and unshare.poll() is None:
            try:
                found = children.read_text().split()
                # The child shows before it has entered its namespaces: wait until it runs sleep.
                if found and Path(f"/proc/{found[0]}/comm").read_text().strip() == "sleep":
                    init = int(found[0])
                    break
            except OSError:
                pass
            time.sleep(0.01)
        if not init:
            why = unshare.stderr.read().decode(errors="replace") if unshare.poll() is not None and unshare.stderr else ""
            raise AssertionError(f"unshare started no container: {why}")
        yield init
    finally:
        # Killed first, the init is reaped by unshare (which waits for it), then unshare ends.
        if init:
            try:
                os.kill(init, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            unshare.wait(timeout=10)
        except subprocess.TimeoutExpired:
            unshare.kill()
            unshare.wait()
        if unshare.stderr:
            unshare.stderr.close()


async def iws_client(args: List[str], inside: int = 0) -> Tuple[int, str]:
    """Runs iws-client (inside the container whose init is `inside`, through nsenter -a, or on the
    host); its exit code and output. Awaited: the event loop runs meanwhile."""
    command = [str(binary("iws-client")), *args]
    if inside:
        command = ["nsenter", "-t", str(inside), "-a", *command]
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace").strip()


def mounts_of(pid: int) -> List[str]:
    return [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]


def test_a_container_process_calls_the_workspace_socket_hosted_by_python(scratch: Path, container: int) -> None:
    async def main() -> None:
        d = ws_daemon.Daemon(config(scratch))
        try:
            await d.init_workspace(init("ws-iws", "m-iws"))
            socket = scratch / "area/ws-iws-daemon/daemon.sock"
            await d.attach_container(ws_daemon.AttachContainerRequest(id="ws-iws", pid=container))
            assert socket.is_socket()
            target = scratch / "proc-target"
            target.mkdir()

            async with Ticker() as ticker:
                # From inside the container: a proc of the container's PID namespace, mounted in its
                # mount namespace only.
                code, out = await iws_client([str(socket), "mount-proc", str(target), "1"], inside=container)
                assert (code, out) == (0, "OK"), out
                assert str(target) in mounts_of(container)
                names = os.listdir(f"/proc/{container}/root{target}")
                assert [n for n in names if n.isdigit()] == ["1"], f"only the container's processes: {names}"
                assert os.listdir(target) == [], "the host sees nothing"

                # The same call from the host over the same socket: not a process of the container.
                code, out = await iws_client([str(socket), "mount-proc", str(target), "1"])
                # (iws-client prints the status code as tonic names it, and exits 1 on a gRPC error.)
                assert code == 1 and out.startswith("PermissionDenied: "), out

                # In-process: no caller identity at all.
                await raises(
                    call(d, "MountProc", {"target": str(target), "pid": 1}),
                    "FAILED_PRECONDITION",
                    "not_on_workspace_socket",
                )

                code, out = await iws_client([str(socket), "umount-proc", str(target), "1"], inside=container)
                assert (code, out) == (0, "OK"), out
                assert str(target) not in mounts_of(container)
            assert ticker.ticks >= 1 and ticker.max_gap < 0.2, f"the event loop stalled {ticker.max_gap:.3f} s"

            await d.detach_container(ws_daemon.DetachContainerRequest(id="ws-iws"))
            await d.dispose_workspace(ws_daemon.DisposeWorkspaceRequest(id="ws-iws"))
        finally:
            await d.close()

    run(main())
