"""What a run shows: live metrics, the results block, thresholds, the web UI tabs, the dashboard and the HTML report."""

__all__: list[str] = []
