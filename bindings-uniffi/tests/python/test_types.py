"""The type hints ship and mean something: mypy --strict accepts typed use of the installed
package (records, coroutine methods, results) and rejects a wrong request record, a wrong field
type and a result used as another type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GOOD = '''
import ws_daemon as w


async def main() -> None:
    d: w.Daemon = await w.start("")
    request = w.InitWorkspaceRequest(
        id="ws1",
        metadata=w.WorkspaceMetadata(owner="u1", meta_id="m1"),
        initializer=w.WorkspaceInitializer(empty=w.EmptyInitializer()),
    )
    done: w.InitWorkspaceResponse = await d.init_workspace(request, timeout_ms=1000)
    url: str = (await d.backup_workspace(w.BackupWorkspaceRequest(id="ws1"))).url
    exists: bool = (await d.is_workspace_exists(w.IsWorkspaceExistsRequest(id="ws1"))).exists
    state: int = (await d.workspace_state(w.WorkspaceStateRequest(id="ws1"))).state
    size: int = (await d.snapshot_status(w.SnapshotStatusRequest(url=url))).size_bytes
    raw: bytes = await d.call("/wsdaemon.WorkspaceContentService/IsWorkspaceExists", b"")
    text: str = await d.call_json("/wsdaemon.WorkspaceContentService/IsWorkspaceExists", "{}", timeout_ms=500)
    names: list[str] = [m.path for m in w.methods()]
    closed: bool = d.is_closed()
    await d.close()
'''

BAD = '''
import ws_daemon as w


async def main(d: w.Daemon) -> None:
    await d.init_workspace(w.BackupWorkspaceRequest(id="ws1"))
    n: int = (await d.backup_workspace(w.BackupWorkspaceRequest(id="ws1"))).url
    w.WorkspaceMetadata(owner=1)
'''


def mypy(source: str, scratch: Path) -> subprocess.CompletedProcess:
    (scratch / "usage.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(scratch / "cache"), "usage.py"],
        cwd=scratch, capture_output=True, text=True, timeout=300,
    )


def test_typed_use_checks(scratch: Path) -> None:
    done = mypy(GOOD, scratch)
    assert done.returncode == 0, done.stdout + done.stderr


def test_wrong_types_are_caught(scratch: Path) -> None:
    done = mypy(BAD, scratch)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert 'incompatible type "BackupWorkspaceRequest"; expected "InitWorkspaceRequest"' in out, out
    assert 'expression has type "str", variable has type "int"' in out, out
    assert 'Argument "owner" to "WorkspaceMetadata" has incompatible type "int"; expected "str"' in out, out
    assert "Found 3 errors" in out, out
