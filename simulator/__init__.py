"""The simulator: synthetic microscope videos and a simulated expert panel.

Not part of the product: seed_demo, the tests and the benchmarks use it; no product module
imports it (tests/test_layout.py).
"""
