"""The user layer: :class:`WebSocketUser` and what it does per connection."""

from wslocust.user.websocket_user import ConnectionState, WebSocketUser

__all__ = ["ConnectionState", "WebSocketUser"]
