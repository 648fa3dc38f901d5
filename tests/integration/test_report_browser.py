"""The replay's HTML report in a real headless browser (Debian's chromium, driven by playwright): the
charts draw, the table sorts and filters, and a click on a row or a chart marker shows the tape around
that anomaly. The page must work offline: any request it makes fails the test. A screenshot of the
report with a context open is kept in test-artifacts/."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from entrypoints.cli import main

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(main, ["replay", "--report", str(out / "report.html"), "--top", "0"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    rows = json.loads(re.search(r'<script type="application/json" id="anomaly-data">(.*?)</script>', html, re.S)
                      .group(1))
    assert len(rows) > 20
    return out / "report.html", rows


@pytest.fixture(scope="module")
def page(report: tuple[Path, list[dict]]):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (scripts/test.sh installs Debian's package)"
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report[0].as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg")
        yield page
        assert requests == [], "the report fetched something: it must work offline"
        assert errors == [], errors
        browser.close()


def visible_rows(page) -> list:  # type: ignore[no-untyped-def]
    return [r for r in page.locator("#anomaly-table tbody tr").all() if r.is_visible()]


def test_every_chart_draws(page, report) -> None:  # type: ignore[no-untyped-def]
    html = report[0].read_text(encoding="utf-8")
    charts = html.count('<section class="chart"')
    assert charts > 1 and page.locator(".plotly-graph-div .main-svg").count() >= charts
    # The anomaly markers drawn are the anomalies of the charted symbols.
    assert page.locator(".plotly-graph-div .scatterlayer .trace .points path").count() > 0


def test_the_table_sorts_by_a_column_and_filters(page, report) -> None:  # type: ignore[no-untyped-def]
    rows = report[1]
    assert len(visible_rows(page)) == len(rows)
    page.click('#anomaly-table th[data-key="score"]')  # sorted by score descending: now ascending
    first = int(visible_rows(page)[0].get_attribute("data-row"))
    assert rows[first]["score"] == min(r["score"] for r in rows)
    page.click('#anomaly-table th[data-key="symbol"]')
    symbols = [rows[int(r.get_attribute("data-row"))]["symbol"] for r in visible_rows(page)]
    assert symbols == sorted(symbols, reverse=True)
    detector = rows[0]["detector"]
    page.select_option("#detector-filter", detector)
    shown = [rows[int(r.get_attribute("data-row"))] for r in visible_rows(page)]
    assert shown and {r["detector"] for r in shown} == {detector}
    assert len(shown) == sum(r["detector"] == detector for r in rows)
    assert page.inner_text("#shown-count") == f"{len(shown)} of {len(rows)} shown"
    page.select_option("#detector-filter", "")
    page.fill("#filter", rows[0]["symbol"].lower())
    assert {rows[int(r.get_attribute("data-row"))]["symbol"] for r in visible_rows(page)} == {rows[0]["symbol"]}
    page.fill("#filter", "")


def test_clicking_a_row_shows_the_tape_around_that_anomaly(page, report) -> None:  # type: ignore[no-untyped-def]
    rows = report[1]
    # The highest-scoring anomaly whose trades after it are known.
    pick = max((i for i, r in enumerate(rows) if r["after"]), key=lambda i: rows[i]["score"])
    page.locator(f'#anomaly-table tbody tr[data-row="{pick}"] td').nth(3).click()
    context = page.locator("#context")
    assert context.is_visible()
    row = rows[pick]
    assert page.inner_text("#context h3").startswith(f"{row['symbol']} · {row['detector']} · {row['local']}")
    tape = page.locator("#context-tape tbody tr")
    assert tape.count() == len(row["before"]) + (row["own"] < 0) + len(row["after"])
    found = page.locator("#context-tape tr.found td")
    assert found.nth(4).inner_text() == f"← {row['detector']}" and found.nth(3).inner_text() == f"{row['size']:,}"
    cells = [c.inner_text() for c in tape.nth(tape.count() - 1).locator("td").all()]
    assert cells[0] == row["after"][-1][0] and cells[3] == f"{row['after'][-1][3]:,}"
    assert page.locator("#anomaly-table tbody tr.selected").get_attribute("data-row") == str(pick)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-context.png"), full_page=False)


def test_clicking_a_chart_marker_shows_its_anomaly(page, report) -> None:  # type: ignore[no-untyped-def]
    rows = report[1]
    marker = page.locator(".plotly-graph-div .scatterlayer .trace .points path").first
    marker.scroll_into_view_if_needed()
    marker.click(force=True)
    heading = page.inner_text("#context h3")
    assert any(heading.startswith(f"{r['symbol']} · {r['detector']} · {r['local']}") for r in rows)


def open_episode_tape(page, path: Path, episode):  # type: ignore[no-untyped-def]
    """A report of one rate episode over the trades of its tape, opened with the episode's tape shown:
    the tape's rows."""
    import numpy as np

    from adapters.report.bars import BarCollector
    from adapters.report.html import write_html_report
    from domain.model import TRADE_DTYPE

    tape = episode.context
    trades = np.zeros(len(tape), TRADE_DTYPE)
    trades["symbol"], trades["ts_event"] = episode.symbol, [p.ts_event for p in tape]
    trades["price"], trades["size"] = [p.price for p in tape], [p.size for p in tape]
    bars = BarCollector()
    bars.add(trades)
    write_html_report(path, bars, [episode], {"trades": len(tape), "anomalies": 1, "by_detector": {episode.detector: 1},
                                              "seconds": 0.1, "trades_per_second": 100.0, "source": ["x.csv"]})
    page.goto(path.as_uri())
    page.wait_for_selector(".plotly-graph-div .main-svg")
    page.locator('#anomaly-table tbody tr[data-row="0"] td').nth(3).click()
    return page.locator("#context-tape tbody tr")


def test_an_episodes_own_print_is_marked_in_its_place_not_shown_twice(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A rate episode's tape runs on to the print that completed its measure and holds the episode's
    own print: that row is marked (it was listed twice, and the completing print was missing)."""
    from domain.model import Anomaly, Print

    s, t0 = 1_000_000_000, 1_741_100_400_000_000_000  # 2025-03-04 10:00 New York
    tape = [Print(t0 + k * s // 10, 100.0 + k / 100, 100 + k, "B") for k in range(10)]
    own = tape[6]
    episode = Anomaly(id="e1", detector="trade_burst", symbol="ZZZT", ts_event=own.ts_event, price=own.price,
                      size=own.size, score=2.0, severity="medium", reason="a burst", session="regular",
                      context=tuple(tape))
    rows = open_episode_tape(page, tmp_path / "episode.html", episode)
    assert rows.count() == len(tape) + 1  # the ten trades and the line saying the trades after are not known
    assert page.locator("#context-tape tr.found").count() == 1
    marked = [c.inner_text() for c in page.locator("#context-tape tr.found td").all()]
    assert marked[3] == f"{own.size:,}" and marked[4] == "← trade_burst"
    assert [c.inner_text() for c in rows.nth(6).locator("td").all()] == marked  # in its place
    assert rows.nth(9).locator("td").nth(3).inner_text() == f"{tape[-1].size:,}"  # the print that completed it
    assert "10 trades up to the print that completed its measure" in page.inner_text("#context .note >> nth=1")


def test_an_episodes_tape_that_no_longer_reaches_its_print_shows_where_trades_are_left_out(  # type: ignore[no-untyped-def]
        page, tmp_path: Path) -> None:
    """The kept tape is the ten trades before an episode's end; on the real NVDA days it never reached
    back to the episode's print, and the tape read as if nothing had traded in between."""
    from domain.model import Anomaly, Print

    s, t0 = 1_000_000_000, 1_741_100_400_000_000_000  # 2025-03-04 10:00 New York
    tape = [Print(t0 + s + k * s // 100, 100.0, 10 + k, "B") for k in range(10)]  # from 1 s after its print
    episode = Anomaly(id="e2", detector="trade_burst", symbol="ZZZT", ts_event=t0, price=100.0, size=7, score=2.0,
                      severity="medium", reason="a burst", session="regular", context=tuple(tape))
    rows = open_episode_tape(page, tmp_path / "gap.html", episode)
    assert "found" in (rows.nth(0).get_attribute("class") or "")
    assert rows.nth(1).get_attribute("class") == "gap" and rows.nth(2).locator("td").nth(3).inner_text() == "10"
    assert "are not kept" in page.inner_text("#context .note >> nth=1")
