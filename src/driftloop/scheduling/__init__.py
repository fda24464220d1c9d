"""Schedules and triggers: the clock of the closed loop (no business logic of its own)."""
