"""Deciding what to fetch from the API: pollers per target, the API budget, known state, single flight."""
