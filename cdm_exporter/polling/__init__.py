"""Deciding what to fetch from the API: pollers per target, what to fetch next, the budget, known state."""
