"""Pairdesk ops_api: trading ops kill switch — halt, flatten, guarded resume, rollback, state.

Spec 004 §運用Runbook 仕様 v1; DESIGN.md §5. App factory: :func:`pairdesk.ops_api.main.create_app`.
"""
