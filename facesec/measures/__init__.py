"""Measures every family uses (rates with their intervals); torch-free, and no family's own."""
