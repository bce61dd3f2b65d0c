"""PLACEHOLDER (catalog)."""
