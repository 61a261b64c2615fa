"""The benchmark's modules; `scripts/bench.py` is its command line."""
