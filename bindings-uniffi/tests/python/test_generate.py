"""The other languages stay generatable: uniffi-bindgen (this crate's, from the debug build) writes
Kotlin and Swift sources from the library without error (they are not compiled here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, binary


@pytest.mark.parametrize(
    "language, expected",
    [
        ("kotlin", "uniffi/ws_daemon/ws_daemon.kt"),
        ("swift", "ws_daemon.swift"),
        ("python", "ws_daemon.py"),
    ],
)
def test_sources_generate(language: str, expected: str, scratch: Path) -> None:
    library = binary("libwsd_uniffi.so")
    args = [str(binary("uniffi-bindgen")), "generate", "--library", str(library), "--language", language]
    args += ["--out-dir", str(scratch / language), "--no-format"]
    # uniffi-bindgen reads the cargo metadata of the workspace the library was built in.
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    source = scratch / language / expected
    written = sorted(str(p.relative_to(scratch / language)) for p in (scratch / language).rglob("*") if p.is_file())
    assert source.is_file(), f"{expected} not among {written}"
    text = source.read_text()
    assert "Daemon" in text and "WsdError" in text
    assert "callJson" in text or "call_json" in text
    if language == "swift":
        assert (scratch / language / "ws_daemonFFI.h").is_file(), written
    shutil.rmtree(scratch / language)
