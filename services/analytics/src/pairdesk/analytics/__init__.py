"""Pairdesk analytics service: trading, model, data-quality and risk metrics (DESIGN.md §5;
spec 004 §ml-assets-analytics 仕様 v1)."""
