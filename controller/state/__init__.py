"""Deterministic, replicated desired state: every change is a command applied in Raft log order."""
