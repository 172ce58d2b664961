"""How wslocust plugs into Locust: options, shapes, distribution and limits."""

__all__: list[str] = []
