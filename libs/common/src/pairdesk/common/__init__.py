"""Pairdesk shared schemas, settings and helpers (DESIGN.md §2)."""
