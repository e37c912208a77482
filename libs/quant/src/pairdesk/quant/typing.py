"""Array aliases shared by the ``pairdesk.quant`` modules (one place, DESIGN.md §8)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "FloatArray", "IntArray"]

#: float64 ndarray of any shape (prices, returns, features; units in each function's docstring).
FloatArray = npt.NDArray[np.float64]
#: int64 ndarray (bar indices, ns UTC timestamps, codes).
IntArray = npt.NDArray[np.int64]
#: bool ndarray (masks).
BoolArray = npt.NDArray[np.bool_]
