"""The gevent connection layer: one socket per WebSocket, moving bytes between it and the codec."""

__all__: list[str] = []
