"""The `trades.dlq` record format, shared by ingest, the worker and the indexer.

key = the key of the message the record came in (None when it came from a file); value = the
original bytes (the whole message when the message itself was unreadable, the rejected trade
alone, re-encoded as a one-trade message, when the engine refused one trade of a batch); headers
`reason`, `detail`, `origin` (`topic[partition]@offset`, or the file), and `truncated` = the
original length when the value had to be cut to fit a Kafka record.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.model import DeadLetter

DETAIL_HEADER_BYTES = 4096
# Faust's and aiokafka's producers refuse requests over 1,000,000 bytes (`max_request_size`): a
# record larger than the topic accepts still gets its dead letter, with its first bytes.
MAX_DEAD_LETTER_VALUE = 512 * 1024

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def dead_letter_record(letter: DeadLetter) -> Record:
    """(key, value, headers) of `letter` on the dead-letter topic."""
    value = letter.raw
    headers = [("reason", letter.reason.encode()), ("detail", letter.detail.encode()[:DETAIL_HEADER_BYTES]),
               ("origin", letter.origin.encode())]
    if len(value) > MAX_DEAD_LETTER_VALUE:
        headers.append(("truncated", str(len(value)).encode()))
        value = value[:MAX_DEAD_LETTER_VALUE]
    return letter.key, value, headers


def read_dead_letter(key: bytes | None, value: bytes | None,
                     headers: Sequence[tuple[str, bytes]] | None) -> DeadLetter | None:
    """The dead letter a record of the dead-letter topic holds (None: a record without a `reason`
    header, so not one `dead_letter_record` wrote). `truncated_length` tells whether its value was cut."""
    found = {name: data or b"" for name, data in headers or ()}  # (a header may have no value: None)
    if "reason" not in found:
        return None
    text = {name: data.decode("utf-8", errors="replace") for name, data in found.items()}
    return DeadLetter(text["reason"], text.get("detail", ""), text.get("origin", ""), value or b"", key)


def truncated_length(headers: Sequence[tuple[str, bytes]] | None) -> int | None:
    """The original length of a dead letter's value cut to fit a record, None when it was not cut."""
    found = {name: data or b"" for name, data in headers or ()}
    return int(found["truncated"]) if found.get("truncated", b"").isdigit() else None
