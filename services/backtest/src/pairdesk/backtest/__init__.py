"""Pairdesk backtest service (DESIGN.md §5): asynchronous ``bt run`` over HTTP.

``pairdesk.backtest.main:create_app`` is the FastAPI app; ``pairdesk.backtest.worker`` the Celery
worker that executes runs with the research engine and stores their outputs in PostgreSQL.
"""
