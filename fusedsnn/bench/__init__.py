"""Benchmarks behind ``fusedsnn bench``: neuron microbenchmarks and the study's experiments."""
