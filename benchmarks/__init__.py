"""ferroloop benchmark race: see benchmarks/README.md."""
