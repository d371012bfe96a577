"""The run report: one self-contained HTML page built from a run's outputs."""
