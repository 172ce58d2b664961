"""Hold connections and echo one message per connection every MESSAGE_INTERVAL ms."""

from wslocust import WebSocketUser


class EchoUser(WebSocketUser):
    message_interval = 1.0
