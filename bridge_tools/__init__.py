"""Tools to run the bridge and its stand-ins on one machine: the demo, tests and benchmarks use them."""
