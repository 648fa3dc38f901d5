"""What a log reader has read of a partition in one go: where its records are, and where none is."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# A question this far past what was read is sought to rather than read on to: a seek costs a fetch,
# reading on a fetch per megabyte (up to a thousand offsets is a transaction or a few of anomalies).
READ_ON_AT_MOST = 1_000


@dataclass
class ReadSpan:
    """One partition read without a seek from `start` to `position`: `records` holds the offsets of
    the records the reader got in between (ascending). Every other offset in between holds none for
    it: a transaction's commit marker, an aborted record (read committed), one compacted away.

    So a span answers "the first record in [first, before)" for every jump it covers, from one
    fetch: a fetch returns all a partition has up to its end (or a megabyte), markers included."""

    start: int
    position: int
    records: deque[int] = field(default_factory=deque)

    def reaches(self, first: int) -> bool:
        """Whether what was read, or reading on from it without a seek, tells what lies from `first`."""
        return self.start <= first <= self.position + READ_ON_AT_MOST

    def drop_below(self, first: int) -> None:
        """Forget what lies below `first` (the reader's questions move forward with the consumer's)."""
        while self.records and self.records[0] < first:
            self.records.popleft()
        self.start = max(self.start, first)  # past `position` when the questions ran ahead of the reads

    def first_before(self, before: int) -> int | None:
        """The span's first record, when it lies below `before`."""
        return self.records[0] if self.records and self.records[0] < before else None

    def answers(self, before: int) -> bool:
        """Whether it is known what lies from `start` to `before`: read up to there, or a record found first."""
        return self.position >= before or self.first_before(before) is not None

    def extend(self, offsets: Iterable[int], position: int) -> None:
        """The records read next, and where that read left the reader (past any markers that followed them)."""
        lowest = max(self.start, self.position)  # read on to a question past `position`: none below it counts
        self.records.extend(o for o in offsets if o >= lowest)
        self.position = max(self.position, position)
