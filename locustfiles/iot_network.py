"""
IoT sensor network: 50,000 sensors connect over 5 minutes, one reading a minute each, for 24 hours.

Commands the server pushes to the sensors with their send time (a JSON ``"sent_at"``) are timed
as ``push``, as in ``live_event.py``.
"""

from wslocust import RampUp, WebSocketUser


class Sensor(WebSocketUser):
    pass


class IoTNetwork(RampUp):
    connections = 50_000
    ramp_up = 300.0
    message_interval = 60.0
    duration = 86_400.0
