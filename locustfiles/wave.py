"""Wave: 5 waves of 200 connections, each up 5 s with a message every 100 ms per connection, then down 2 s."""

from wslocust import Wave, WebSocketUser


class WaveUser(WebSocketUser):
    pass


class FiveWaves(Wave):
    connections = 200
    up = 5.0
    down = 2.0
    cycles = 5
    message_interval = 0.1
