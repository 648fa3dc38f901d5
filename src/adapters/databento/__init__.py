"""Databento adapters: historical files (DBN, CSV) as a TradeSource."""

from adapters.databento.source import DatabentoFileSource

__all__ = ["DatabentoFileSource"]
