"""Live event streaming: 20,000 viewers join over 10 minutes, a heartbeat every 30 s, for 2 hours."""

from wslocust import RampUp, WebSocketUser


class Viewer(WebSocketUser):
    pass


class LiveEvent(RampUp):
    connections = 20_000
    ramp_up = 600.0
    message_interval = 30.0
    duration = 7200.0
