"""The package's buffers (ws_daemon._buffers) replace uniffi's for every call: they are in place,
and every kind of value the contract has comes back from Rust as it went in."""

from __future__ import annotations

import ws_daemon as w
from ws_daemon import _buffers
from ws_daemon._ffi import ws_daemon as generated


def test_the_fast_buffers_are_installed() -> None:
    # An upgrade of uniffi that renames what they replace fails here, not silently slower.
    assert all(hasattr(generated, name) for name in _buffers.REPLACED)
    assert w._FAST_BUFFERS is True  # type: ignore[attr-defined]


def test_records_strings_and_enums_round_trip_through_rust_buffers() -> None:
    git = w.GitInitializer(
        remote_uri="https://example.invalid/r.git",
        target_mode=2,
        clone_taget="main",
        checkout_location="r ✓ ünïcode",
        config=w.GitConfig(custom_config={"core.autocrlf": "false", "a": ""}, authentication=1),
        full_clone=True,
    )
    request = w.InitWorkspaceRequest(
        id="ws",
        metadata=w.WorkspaceMetadata(owner="o", meta_id="m"),
        initializer=w.WorkspaceInitializer(
            composite=w.CompositeInitializer(
                initializer=[
                    w.WorkspaceInitializer(git=git),
                    w.WorkspaceInitializer(
                        prebuild=w.PrebuildInitializer(
                            prebuild=w.SnapshotInitializer(snapshot="s@b", from_volume_snapshot=True),
                            git=[git, w.GitInitializer()],
                        )
                    ),
                    w.WorkspaceInitializer(),
                ]
            )
        ),
        remote_storage_disabled=True,
        storage_quota_bytes=-(2**62),
    )
    converter = generated._UniffiFfiConverterTypeInitWorkspaceRequest
    assert converter.lift(converter.lower(request)) == request
    text = generated._UniffiFfiConverterString
    assert text.lift(text.lower("")) == ""
    assert text.lift(text.lower("naïve ✓ " * 1000)) == "naïve ✓ " * 1000
    step = generated._UniffiFfiConverterTypeIsWorkspaceExistsStep
    done = generated.IsWorkspaceExistsStep.DONE(w.IsWorkspaceExistsResponse(exists=True))
    assert step.lift(step.lower(done)) == done
