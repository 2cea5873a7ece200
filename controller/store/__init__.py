"""Replicated storage of the state machine: one backend per file behind :class:`Store`."""
