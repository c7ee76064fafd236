"""Robustness by group of people: attributes predicted for a dataset, and rates sliced by them."""
