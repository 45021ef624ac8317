"""Importing this package registers every section builder (one module per layer family)."""
from . import alexeyab, asff, conv, gaussian_yolo, heads, merge, pool, resample, simple  # noqa: F401
