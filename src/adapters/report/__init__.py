"""The replay report: per-symbol 1-minute bars and one self-contained HTML file."""

from adapters.report.bars import BarCollector
from adapters.report.html import write_html_report

__all__ = ["BarCollector", "write_html_report"]
