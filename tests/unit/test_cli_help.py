"""The help screens as a new user reads them: where to start, what each option takes, and which
variable stands in for an option that is not given."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from adapters.synthetic import labels_path_for
from domain.detectors import default_detectors
from entrypoints.cli import main


def help_of(*command: str) -> str:
    """A command's --help as one line: click wraps at the terminal's width, a phrase anywhere."""
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="stockanomaly", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def option_help(command: str, option: str) -> str:
    """One option's line of `command --help`, as click renders it (its own default included)."""
    cmd = main.commands[command]
    with click.Context(cmd, info_name=command) as ctx:
        record = next(p for p in cmd.params if option in p.opts).get_help_record(ctx)
    assert record is not None
    return " ".join(" ".join(record).split())


def test_the_group_help_says_where_to_start() -> None:
    text = help_of()
    assert "Start with `stockanomaly replay FILE...`" in text and "`stockanomaly generate m.dbn.zst`" in text


def test_the_log_level_shows_its_choices_and_default_in_one_case_and_takes_any(tmp_path: Path) -> None:
    """The choices showed in lower case (click shows a case-insensitive choice so) beside `[default: WARNING]`."""
    assert "--log-level [debug|info|warning|error]" in help_of() and "[default: warning]" in help_of()
    listed = CliRunner().invoke(main, ["--log-level", "WARNING", "suppressions", "--json",
                                       "--file", str(tmp_path / "none.json")])
    assert (listed.exit_code, listed.output) == (0, "[]\n")


STAND_INS = [  # (command, option, the variable that stands in for it)
    ("replay", "--out", "STOCKANOMALY_OUT"),
    ("replay", "--dead-letters", "STOCKANOMALY_DEAD_LETTERS"),
    ("replay", "--thresholds", "STOCKANOMALY_THRESHOLDS"),
    ("replay", "--detectors", "STOCKANOMALY_DETECTORS"),
    ("replay", "--suppressions", "STOCKANOMALY_SUPPRESSIONS"),
    ("evaluate", "--thresholds", "STOCKANOMALY_THRESHOLDS"),
    ("label", "--file", "STOCKANOMALY_VERDICTS"),
    ("show", "--file", "STOCKANOMALY_OUT"),
    ("suppress", "--file", "STOCKANOMALY_SUPPRESSIONS"),
    ("suppressions", "--file", "STOCKANOMALY_SUPPRESSIONS"),
    ("notify", "--webhook", "STOCKANOMALY_NOTIFY_WEBHOOKS"),
    ("notify", "--slack", "STOCKANOMALY_NOTIFY_WEBHOOKS"),
    ("notify", "--min-severity", "STOCKANOMALY_NOTIFY_MIN_SEVERITY"),
    ("notify", "--group", "STOCKANOMALY_NOTIFY_GROUP"),
    ("ingest", "--bootstrap", "KAFKA_BOOTSTRAP_SERVERS"),
    ("ingest", "--partitions", "STOCKANOMALY_PARTITIONS"),
    ("decode", "--topic", "STOCKANOMALY_TRADES_TOPIC"),
    ("tail", "--topic", "STOCKANOMALY_ANOMALIES_TOPIC"),
    ("query", "--es-url", "ELASTICSEARCH_URL"),
    ("show", "--es-url", "ELASTICSEARCH_URL"),
]


@pytest.mark.parametrize(("command", "option", "variable"), STAND_INS, ids=[f"{c} {o}" for c, o, _ in STAND_INS])
def test_an_option_a_variable_stands_in_for_names_it(command: str, option: str, variable: str) -> None:
    """A set STOCKANOMALY_OUT made every replay write (over) a file its help did not mention."""
    assert variable in option_help(command, option)


@pytest.mark.parametrize(("command", "option"), [("replay", "--detectors"), ("query", "--detector"),
                                                  ("suppress", "--detector")])
def test_an_option_naming_detectors_lists_every_detector_it_takes(command: str, option: str) -> None:
    entry = option_help(command, option)
    assert all(detector.name in entry for detector in default_detectors())


@pytest.mark.parametrize("command", sorted(main.commands))
def test_no_option_shows_clicks_type_name_for_a_number(command: str) -> None:
    """`--top INTEGER RANGE`, `--metrics-port INTEGER RANGE`: the range is shown beside the help anyway."""
    text = help_of(command)
    assert "INTEGER RANGE" not in text and "FLOAT RANGE" not in text


@pytest.mark.parametrize("command", sorted(main.commands))
def test_an_option_that_takes_free_text_is_the_only_one_shown_as_text(command: str) -> None:
    """`--since TEXT`, `--bootstrap TEXT`, `--between TEXT`: the metavar said nothing of the form asked for."""
    import re

    options = re.findall(r"(--[a-z-]+) TEXT\b", help_of(command))
    assert set(options) <= {"--note"}  # a free-text note, nothing else


def test_replay_names_what_its_numbers_are() -> None:
    assert option_help("replay", "--top").startswith("--top N ")
    assert option_help("replay", "--metrics-port").startswith("--metrics-port PORT ")


def test_label_says_it_needs_one_verdict_and_where_ids_are_found(tmp_path: Path) -> None:
    """Its usage line, `label [OPTIONS] ID`, hid that a verdict is required, and nothing said where an id comes from."""
    text = help_of("label")
    assert text.startswith("Usage: stockanomaly label --confirmed|--false-positive [OPTIONS] ID")
    assert all(where in text for where in ("tables of `replay` and `query`", "end of `tail`'s lines",
                                           "replay's --out file", "`show`"))
    for given in ([], ["--confirmed", "--false-positive"]):
        result = CliRunner().invoke(main, ["label", "0" * 32, *given, "--file", str(tmp_path / "v.jsonl")])
        assert result.exit_code != 0 and len(result.output.splitlines()) == 1
        assert "--confirmed or --false-positive" in result.output
    assert not (tmp_path / "v.jsonl").exists()


def test_evaluate_says_which_detectors_it_scores_and_where_its_labels_are() -> None:
    text = help_of("evaluate")
    assert "STOCKANOMALY_DETECTORS" in text and "no suppression rule is honoured" in text
    assert f"m.dbn.zst -> {labels_path_for('m.dbn.zst').name}" in option_help("evaluate", "--labels")


def test_the_command_list_shows_each_commands_summary_whole_at_80_columns() -> None:
    """Click cut each command's first docstring sentence at about 60 characters ("Learn per-symbol
    size thresholds from history, for..."): a summary of its own fits."""
    result = CliRunner().invoke(main, ["--help"], prog_name="stockanomaly", terminal_width=80)
    listed = result.output.split("Commands:", 1)[1].splitlines()
    rows = {line.split()[0]: line.split(None, 1)[1] for line in listed if line.strip()}
    assert set(rows) == set(main.commands)
    assert not [row for row in rows.values() if row.endswith("...")]


def test_ingest_help_says_how_to_resume_an_interrupted_ingest() -> None:
    text = help_of("ingest")
    assert "is resumed by running the same command with --resume" in text
    assert "those are skipped (said on stderr), the rest sent" in option_help("ingest", "--resume")


def test_suppress_does_not_promise_ids_a_rule_changes() -> None:
    """It said 'state and ids are unchanged', but an incident whose earliest anomaly a rule holds back is
    regrouped under another id (test_feedback: a verdict on such an incident), and `show` of the old id
    then finds nothing in the replay's --out."""
    text = help_of("suppress")
    assert "state and ids are unchanged" not in text
    assert "state and the other anomalies' ids are unchanged" in text
    assert "Incidents are grouped from the anomalies published: one whose earliest anomaly a rule holds back gets " \
           "another id" in text
