"""Pure domain: trades, anomalies, detectors and rules; standard library, numpy and scikit-learn only."""
