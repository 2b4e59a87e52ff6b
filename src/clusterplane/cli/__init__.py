"""The `clusterplane` command line: `serve` runs the server; other commands talk HTTP."""
