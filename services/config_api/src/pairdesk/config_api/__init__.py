"""Pairdesk config_api service: bearer tokens, policy configs, validation and audit (DESIGN.md
§5/§6; spec 004 §設定変更ワークフロー仕様 v1)."""
