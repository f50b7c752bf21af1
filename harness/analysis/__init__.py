"""Statistics over a run's trials.csv (pandas/numpy): rates, the analytic model, the gate, summary.json."""
