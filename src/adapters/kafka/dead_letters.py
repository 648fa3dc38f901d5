"""The `trades.dlq` record format, shared by ingest, the worker and the indexer.

key = the key of the message the record came in (None when it came from a file); value = the
original bytes (the whole message when the message itself was unreadable, the rejected trade
alone, re-encoded as a one-trade message, when the engine refused one trade of a batch); headers
`reason`, `detail`, `origin` (`topic[partition]@offset`, or the file), and `truncated` = the
original length when the value had to be cut to fit a Kafka record.
"""

from __future__ import annotations

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
