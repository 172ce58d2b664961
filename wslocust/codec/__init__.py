"""The sans-I/O RFC 6455 client codec: frames, the protocol state machine, the opening handshake and ws:// URIs.

Nothing here imports gevent, socket or Locust."""

__all__: list[str] = []
