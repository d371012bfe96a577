"""Provenance and lineage: the run record, the lineage store, per-row tracing."""
