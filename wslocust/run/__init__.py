"""A run's own data: its state (counters, worker views, schedule...), the pacing of connects, the settings users read."""

__all__: list[str] = []
