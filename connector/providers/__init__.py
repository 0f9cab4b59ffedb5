"""Enrichment providers: one module per vendor, each registering itself with @register_provider."""
