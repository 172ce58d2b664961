"""
Error recovery: 500 connections, a message per second each; after 5 s (once all are
open) the target fails for 3 s (the embedded server restarts); logs how long the
connections take to come back once it is back. 20 s in all (--ws-time-scale 0.05: 1 s).
"""

from wslocust import ErrorRecovery, WebSocketUser


class RecoveringUser(WebSocketUser):
    reconnect_delay = 0.5
    max_reconnect_attempts = 10


class TargetFailsAndComesBack(ErrorRecovery):
    connections = 500
    message_interval = 1.0
    fault_at = 5.0
    fault_duration = 3.0
    duration = 20.0
