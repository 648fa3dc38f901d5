"""`reindex`: the documents Elasticsearch refused, written again by their kind's sink, what it
refuses again reported (not retried), and every sink closed however it ends. (That a document
written again replaces the one under its id: tests/integration/test_reindex_dead_letters.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from builders import FakeIndexSink
from test_indexer import ANOMALY

from application.reindex import reindex

A1, A2, A3, I1 = (replace(ANOMALY, id=i) for i in ("a1", "a2", "a3", "i1"))


def test_each_kind_is_written_by_its_sink_and_what_is_refused_again_is_said() -> None:
    sinks = {"anomalies": FakeIndexSink(reject={"a2"}), "incidents": FakeIndexSink()}
    outcome = asyncio.run(reindex({"anomalies": [A1, A2, A3], "incidents": [I1]}, sinks))
    assert outcome.indexed == {"anomalies": 2, "incidents": 1}
    assert outcome.refused == [("a2", "HTTP 400: mapper_parsing_exception")]
    assert sinks["anomalies"].written == [A1, A3] and sinks["incidents"].written == [I1]
    assert all(s.closed for s in sinks.values())


def test_the_sinks_are_closed_when_elasticsearch_stays_down() -> None:
    sinks = {"anomalies": FakeIndexSink(refuse=ConnectionError("unavailable for 60 s")), "incidents": FakeIndexSink()}
    with pytest.raises(ConnectionError):
        asyncio.run(reindex({"anomalies": [A1], "incidents": [I1]}, sinks))
    assert all(s.closed for s in sinks.values()) and sinks["incidents"].written == []
