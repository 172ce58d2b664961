"""Connection churn: 100 connections, 10 closed and reopened per second (each lives 10 s), a message every 100 ms, 30 s."""

from wslocust import Churn, WebSocketUser


class ChurnUser(WebSocketUser):
    pass


class ConstantChurn(Churn):
    connections = 100
    connection_lifetime = 10.0
    message_interval = 0.1
    duration = 30.0
