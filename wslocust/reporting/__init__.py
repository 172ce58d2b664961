"""What a run shows: live metrics, the results block, thresholds and the web UI tabs."""

__all__: list[str] = []
