"""Placeholder: the agent shim (receivers, sinks, store) arrives with its own issue."""
