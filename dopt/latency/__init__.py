"""Latency: the per-block table, its calibration and cache, and the timing method (docs/latency.md)."""
