"""A run's own data: WebSocket counters and the pacing of connects."""

__all__: list[str] = []
