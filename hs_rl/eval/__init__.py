"""Evaluation: answering a benchmark (`hs-rl eval`), scoring it (`hs-rl score`) and the benchmark's tiers."""
