"""Faster moving of values through Rust buffers for the module uniffi generates (ws_daemon._ffi).

uniffi's Python runtime writes a record into a Rust buffer piece by piece: a foreign call to
allocate, then per field a context manager, `struct.pack` and a `ctypes.memmove` into the buffer,
growing it with more foreign calls; reading does the same in reverse. For the small messages of
most calls that bookkeeping is most of the call's time (BENCHMARKS.md, issue 14). `install`
keeps every encoding the generated converters define (their `read` and `write` are unchanged)
and only changes where the bytes go: writes into a `bytearray`, copied into one Rust buffer of
the right size; reads from one copy of the Rust buffer, freed at once.

Only the lifting and lowering of buffers owned by the caller change (`lift`/`lower` of every
converter that goes through a Rust buffer, strings included); borrowed buffers (callbacks) keep
uniffi's own stream. The generated module is pinned to one uniffi version by the crate; the
tests check that the names this replaces exist, so an upgrade that renames them fails there.
"""

from __future__ import annotations

import ctypes
import struct
from types import ModuleType
from typing import Any

# uniffi's fixed-size values: the suffix of its `read_<x>`/`write_<x>` methods and their layout.
_FORMS = {
    "i8": struct.Struct(">b"),
    "u8": struct.Struct(">B"),
    "i16": struct.Struct(">h"),
    "u16": struct.Struct(">H"),
    "i32": struct.Struct(">i"),
    "u32": struct.Struct(">I"),
    "i64": struct.Struct(">q"),
    "u64": struct.Struct(">Q"),
    "float": struct.Struct(">f"),
    "double": struct.Struct(">d"),
}

# What `install` replaces in the generated module; the tests check they exist.
REPLACED = ("_UniffiConverterRustBuffer", "_UniffiFfiConverterString", "_UniffiRustBuffer", "InternalError")


def install(generated: ModuleType) -> bool:
    """Makes the generated module's converters use the buffers below; False (and nothing
    changed) when the module is not the shape this was written for."""
    if not all(hasattr(generated, name) for name in REPLACED):
        return False
    rust_buffer = generated._UniffiRustBuffer
    internal_error = generated.InternalError

    class Reader:
        """uniffi's `_UniffiRustBufferStream` over a copy of the buffer's bytes."""

        __slots__ = ("data", "offset", "len")

        def __init__(self, data: bytes) -> None:
            self.data = data
            self.offset = 0
            self.len = len(data)

        def remaining(self) -> int:
            return self.len - self.offset

        def read(self, size: int) -> bytes:
            start = self.offset
            end = start + size
            if end > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = end
            return self.data[start:end]

        def _unpack(self, form: struct.Struct) -> Any:
            start = self.offset
            end = start + form.size
            if end > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = end
            return form.unpack_from(self.data, start)[0]

    class Writer:
        """uniffi's `_UniffiRustBufferBuilder` writing into a bytearray."""

        __slots__ = ("buf",)

        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, value: Any) -> None:
            self.buf += value

        def write_c_size_t(self, v: int) -> None:
            self.buf += struct.pack("@N", v)

    # read_i8 ... read_double and write_i8 ... write_double, one per fixed-size form.
    for suffix, form in _FORMS.items():
        setattr(Reader, "read_" + suffix, lambda self, form=form: self._unpack(form))
        setattr(Writer, "write_" + suffix, lambda self, v, form=form: self.buf.extend(form.pack(v)))

    def to_rust(data: Any) -> Any:
        """A Rust buffer holding `data` (one allocation, one copy)."""
        size = len(data)
        rbuf = rust_buffer.alloc(size)
        if size:
            ctypes.memmove(rbuf.data, bytes(data), size)
        rbuf.len = size
        return rbuf

    def from_rust(rbuf: Any) -> bytes:
        """The bytes of a Rust buffer handed to us, which is freed."""
        try:
            size = rbuf.len
            return ctypes.string_at(rbuf.data, size) if size else b""
        finally:
            rbuf.free()

    def lift(cls: Any, rbuf: Any) -> Any:
        reader = Reader(from_rust(rbuf))
        value = cls.read(reader)
        if reader.remaining() != 0:
            raise RuntimeError(f"junk data left in buffer at end of consume_with_stream {reader.remaining()}")
        return value

    def lower(cls: Any, value: Any) -> Any:
        writer = Writer()
        cls.write(value, writer)
        return to_rust(writer.buf)

    generated._UniffiConverterRustBuffer.lift = classmethod(lift)
    generated._UniffiConverterRustBuffer.lower = classmethod(lower)
    generated._UniffiFfiConverterString.lift = staticmethod(lambda rbuf: from_rust(rbuf).decode("utf-8"))
    generated._UniffiFfiConverterString.lower = staticmethod(lambda value: to_rust(value.encode("utf-8")))
    return True
