"""Pairdesk data_pipeline service (DESIGN.md §5). Its API lands with the platform issue."""
