"""A CSV byte stream that ends cleanly at the last whole line before any decompression damage.

Arrow's CSV reader reads blocks ahead, so a decompression error raised inside it would also throw
away every complete row in the blocks it had prefetched; and a line cut short by the damage could
still split into the right number of fields and pass for a real trade. Here the damage becomes an
end of stream, the partial line is withheld, and the error is kept for the reader to report.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa

READ_SIZE = 1 << 16  # bounds what a decompression error can take with it


class WholeLineStream(io.RawIOBase):
    def __init__(self, path: Path, compression: str | None) -> None:
        self._source = pa.input_stream(str(path), compression=compression)
        self._ready: list[bytes] = []  # whole lines not yet handed out
        self._ready_size = 0
        self._tail = b""  # bytes after the last newline read so far
        self._ended = False
        self.damage: OSError | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or self._ready_size < size):
            self._fill()
        data = b"".join(self._ready)
        out, rest = (data, b"") if size < 0 else (data[:size], data[size:])
        self._ready, self._ready_size = ([rest] if rest else []), len(rest)
        return out

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._source.close()
        super().close()

    def _fill(self) -> None:
        try:
            data = self._source.read(READ_SIZE)
        except OSError as exc:  # arrow reports truncated or corrupt zstd data as OSError
            self.damage, self._ended = exc, True
            return
        if not data:
            self._ended = True
            self._keep(self._tail)
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail += data
        else:
            self._keep(self._tail)
            self._keep(data[:cut + 1])
            self._tail = data[cut + 1:]

    def _keep(self, data: bytes) -> None:
        if data:
            self._ready.append(data)
            self._ready_size += len(data)
