"""Benchmarks that print numbers (img/s, s/kimg, peak memory, compile time): `bench*`."""
