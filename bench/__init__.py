"""Benchmarks: they print figures; nothing here is asserted in a test."""
