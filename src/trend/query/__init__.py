"""Exact, real-time queries: series, top and rising."""
