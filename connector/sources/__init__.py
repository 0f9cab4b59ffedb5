"""CRM sources: one module per CRM, each registering itself with @register_source."""
