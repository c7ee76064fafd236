"""Surrogate recognizers an attacker builds from query access to the target (model stealing)."""
