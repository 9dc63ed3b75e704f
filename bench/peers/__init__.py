"""Peer implementations the benchmark runs beside the service (bench/bench_peers.py)."""
