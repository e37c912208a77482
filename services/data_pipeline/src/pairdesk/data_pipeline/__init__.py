"""Pairdesk data_pipeline service: file-drop ingest into the Parquet store and canonical_bars,
watermarks, quarantine and bar reads (DESIGN.md §5; spec 004 §data-assets-pipeline 仕様 v1)."""
