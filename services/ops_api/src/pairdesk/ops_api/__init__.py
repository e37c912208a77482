"""Pairdesk ops_api service (DESIGN.md §5). Its API lands with the platform issue."""
