"""Pairdesk research pipeline: ingest, DQ, store, train, backtest run, report, CLI."""
