"""Synthetic market: a labelled, realistic trading day written as real DBN, for measuring detection quality."""

from adapters.synthetic.generator import GenerationResult, generate, labels_path_for, write_market_dbn
from adapters.synthetic.market import InjectedEvent, SyntheticMarket, simulate

# The in-memory day, without writing files (the name the CLI's built-in sample uses).
generate_market = simulate

__all__ = ["GenerationResult", "InjectedEvent", "SyntheticMarket", "generate", "generate_market", "labels_path_for",
           "simulate", "write_market_dbn"]
