"""A CSV byte stream that ends cleanly at the last whole line before any decompression damage.

Arrow's CSV reader reads blocks ahead, so a decompression error raised inside it would also throw
away every complete row in the blocks it had prefetched; and a line cut short by the damage could
still split into the right number of fields and pass for a real trade. Here the damage becomes an
end of stream, the partial line is withheld, and the error is kept for the reader to report. In the
same way a line that leaves a quote open is kept to itself (adapters.databento.quoting).
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa

from adapters.databento.quoting import close_open_quotes

READ_SIZE = 1 << 16  # bounds what a decompression error can take with it


class WholeLineStream(io.RawIOBase):
    """The decompressed bytes in one buffer: each read hands out up to `size` bytes of those that end
    at a newline (all of them once the stream has ended cleanly; a read may stop inside a line, the
    next goes on from there), so every byte is copied twice (into the
    buffer, out of it) whatever the read size; this runs on the reader thread holding the GIL, and an
    earlier version's joins and slices cost 0.07 s of a real day's 0.1 s read, against 0.02-0.03 s
    for the decompression itself."""

    def __init__(self, path: Path, compression: str | None) -> None:
        try:
            self._source = pa.input_stream(str(path), compression=compression)
        except UnicodeEncodeError:
            # A name that is not UTF-8 (its bytes surrogate-escaped): arrow opens no such path, Python
            # does (the stream closes the file).
            self._source = pa.input_stream(open(path, "rb"), compression=compression)
        self._buffer = bytearray()  # decompressed, not yet handed out
        self._whole = 0  # how much of the buffer ends at a newline: what may be handed out
        self._ended = False
        self._unusual = False  # the buffer past `_whole` may hold bytes that are not ASCII, or a quote
        self.damage: OSError | None = None
        self.unclosed: set[str] = set()  # lines that left a quote open, as they stood (see close_open_quotes)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or self._whole < size):
            self._fill()
        n = self._whole if size < 0 else min(size, self._whole)
        with memoryview(self._buffer) as view:
            out = bytes(view[:n])
        del self._buffer[:n]
        self._whole -= n
        return out

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def end(self) -> None:
        """Read nothing more from the file: later reads hand out what whole lines are buffered, then
        find the stream at its end. Only a flag is set: arrow's thread may be inside `read` (holding
        a view of the buffer) when another thread calls this."""
        self._ended = True

    def close(self) -> None:
        self._source.close()
        super().close()

    def _fill(self) -> None:
        try:
            data = self._source.read(READ_SIZE)
        except OSError as exc:  # arrow reports truncated or corrupt zstd data as OSError
            self.damage, self._ended = exc, True  # the partial line after the last newline is withheld
            return
        if not data:
            self._ended = True
            self._lines_end_at(len(self._buffer))  # a last line without its newline is a line all the same
            return
        self._buffer += data
        # Databento's exports are ASCII and unquoted: for them these two passes are all it costs.
        self._unusual = self._unusual or not data.isascii() or b'"' in data
        cut = data.rfind(b"\n")
        if cut >= 0:
            self._lines_end_at(len(self._buffer) - len(data) + cut + 1)

    def _lines_end_at(self, end: int) -> None:
        """The buffer holds whole lines up to `end`: made valid UTF-8 if they are not ASCII, and kept each
        to itself if they hold quotes, they may be handed out. Here, not in `read`, which cuts where
        arrow's read size falls: in a line (which then looked open), and in a character (whose two
        halves became two replacement characters)."""
        if self._unusual:
            lines = bytes(self._buffer[self._whole:end])
            fit = lines if lines.isascii() else _as_utf8(lines)
            if b'"' in fit:
                fit = close_open_quotes(fit, self.unclosed)
            if fit is not lines:
                self._buffer[self._whole:end] = fit
                end += len(fit) - len(lines)
            rest = bytes(self._buffer[end:])  # part of one line
            self._unusual = not rest.isascii() or b'"' in rest
        self._whole = end


def _as_utf8(lines: bytes) -> bytes:
    """Whole lines as valid UTF-8: bytes that are not become U+FFFD, so a row holding them fails to
    parse as a row (a bad_row dead letter) instead of Arrow failing to show it to the invalid-row
    handler (its error then escapes the reader, and every row after it is lost). `lines` ends at a
    newline, so no character is cut in two. Exports are ASCII: the check is one pass over the bytes."""
    try:
        lines.decode("utf-8")
    except UnicodeDecodeError:
        return lines.decode("utf-8", "replace").encode("utf-8")
    return lines
