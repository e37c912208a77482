"""Pairdesk core_inference service (DESIGN.md §5): live AI1/AI2 signals on closed bars.

``pairdesk.core_inference.main:create_app`` builds the app; :mod:`.engine` holds the per-pair
live logic (features → predictions → the backtest's rule), :mod:`.service` the loop and the
endpoint logic, :mod:`.repository` all SQL.
"""
