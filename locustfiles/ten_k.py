"""
The 10K test: 10,000 connections over 30 s, held 2 minutes, one message per
connection every 5 s once all are open. TARGET_CONNECTIONS, RAMP_UP_TIME,
TEST_DURATION, MESSAGE_INTERVAL and WS_PROFILE change it.

    WORKERS=4 locust -f locustfiles/ten_k.py --headless
"""

from wslocust import RampUp, WebSocketUser


class TenKUser(WebSocketUser):
    reconnect_delay = 1.0
    max_reconnect_attempts = 3


class TenK(RampUp):
    connections = 10_000
    ramp_up = 30.0
    duration = 120.0
    message_interval = 5.0
    messages_during_ramp = False
