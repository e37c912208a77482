"""Pairdesk pure numerics (DESIGN.md §2, §4): arrays/DataFrames in, arrays/DataFrames/dataclasses out."""
