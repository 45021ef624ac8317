"""Importing this package registers every section builder (one module per layer family)."""
from . import alexeyab, asff, conv, heads, merge, pool, resample, simple  # noqa: F401
