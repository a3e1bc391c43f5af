"""One module per scenario of docs/benchmarks.md; each adds its figures to the report."""
