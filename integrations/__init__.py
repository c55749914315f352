"""Placeholder: Flask and requests auto-instrumentation arrives with its own issue."""
