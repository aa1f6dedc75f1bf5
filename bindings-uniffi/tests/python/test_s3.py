"""The in-process daemon on remote storage: a backup through a real S3 server (s3s-fs, which checks
signatures; scripts/test-all.sh installs it and exports WSD_S3S_FS) from a Python host, restored
by another daemon; a wrong secret is DATA_LOSS."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import pytest

import ws_daemon
from conftest import Ticker, init, raises, run, snapshot_tree, start_process

ACCESS_KEY = "wsd-py-access"
SECRET_KEY = "wsd-py-secret-0123456789"


@pytest.fixture
def s3(scratch: Path) -> Iterator[str]:
    """An s3s-fs server on a port it picks itself, storing under the scratch folder; its endpoint."""
    binary = os.environ.get("WSD_S3S_FS")
    if not binary:
        pytest.fail("WSD_S3S_FS is not set: run scripts/test-all.sh, which installs s3s-fs and sets it")
    (scratch / "s3").mkdir()
    env = {**os.environ, "RUST_LOG": "s3s_fs=info", "NO_COLOR": "1"}
    args = [binary, "--host", "127.0.0.1", "--port", "0", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
    proc, m = start_process(
        [*args, str(scratch / "s3")], r"server is running at (http://[\d.]+:\d+)", scratch / "s3.log", env=env
    )
    try:
        yield m.group(1)
    finally:
        proc.kill()
        proc.wait()


def s3_config(scratch: Path, area: str, endpoint: str, secret: str = SECRET_KEY) -> str:
    return json.dumps(
        {
            "working_area": str(scratch / area),
            "limits": {"shutdown_grace_secs": 1},
            "storage": {
                "backend": "s3",
                "part_size_bytes": 5 << 20,
                "s3": {"endpoint": endpoint, "access_key_id": ACCESS_KEY, "secret_access_key": secret},
            },
        }
    )


def test_backup_through_s3_restores_on_another_daemon(scratch: Path, s3: str) -> None:
    async def main() -> None:
        a = await ws_daemon.start(s3_config(scratch, "py-a", s3))
        b = await ws_daemon.start(s3_config(scratch, "py-b", s3))
        try:
            await a.init_workspace(init("ws-a", "meta-a"))
            content = scratch / "py-a/ws-a"
            (content / "src").mkdir()
            (content / "src/main.rs").write_text("fn main() {}\n")
            (content / "tool").write_bytes(b"#!/bin/sh\n")
            (content / "tool").chmod(0o750)
            (content / "blob.bin").write_bytes(os.urandom(12 << 20))  # a multipart upload
            original = snapshot_tree(content)

            async with Ticker() as ticker:
                backup = await a.backup_workspace(ws_daemon.BackupWorkspaceRequest(id="ws-a"))
            assert backup.url == "workspaces/meta-a/full.tar.zst@gitpod-user-owner-1"
            assert ticker.ticks >= 1 and ticker.max_gap < 0.2, f"the event loop stalled {ticker.max_gap:.3f} s"
            await a.dispose_workspace(ws_daemon.DisposeWorkspaceRequest(id="ws-a", backup=True))
            stored = list((scratch / "s3").rglob("full.tar.zst"))
            assert len(stored) == 1 and stored[0].stat().st_size > 12 << 20, stored

            from_backup = ws_daemon.WorkspaceInitializer(backup=ws_daemon.FromBackupInitializer())
            await b.init_workspace(init("ws-b", "meta-a", from_backup))
            await b.wait_for_init(ws_daemon.WaitForInitRequest(id="ws-b"))
            assert snapshot_tree(scratch / "py-b/ws-b") == original
        finally:
            await a.close()
            await b.close()

    run(main())


def test_a_wrong_secret_is_data_loss_with_a_readable_message(scratch: Path, s3: str) -> None:
    async def main() -> None:
        good = await ws_daemon.start(s3_config(scratch, "py", s3))
        await good.init_workspace(init("ws", "meta"))
        await good.close()
        wrong = await ws_daemon.start(s3_config(scratch, "py", s3, secret="not-the-secret"))
        try:
            e = await raises(wrong.backup_workspace(ws_daemon.BackupWorkspaceRequest(id="ws")), "DATA_LOSS")
            assert "SignatureDoesNotMatch" in e.message
            assert "not-the-secret" not in e.message and "127.0.0.1" not in e.message
        finally:
            await wrong.close()

    run(main())
