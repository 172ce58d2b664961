"""
Live event streaming: 20,000 viewers join over 10 minutes, a heartbeat every 30 s, for 2 hours.

Each update the server pushes with its send time (a JSON ``"sent_at"``, as the reference server's
broadcasts carry) is timed as ``push``: the fan-out's delivery to every viewer. Against a server
that broadcasts: ``wslocust serve --broadcast-interval-ms 1000`` and ``--host ws://127.0.0.1:3003/ws``.
"""

from wslocust import RampUp, WebSocketUser


class Viewer(WebSocketUser):
    pass


class LiveEvent(RampUp):
    connections = 20_000
    ramp_up = 600.0
    message_interval = 30.0
    duration = 7200.0
