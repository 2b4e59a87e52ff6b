"""Benchmarks of clusterplane; results go to docs/performance.md."""
