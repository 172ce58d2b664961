"""Sustained high load: 2,000 connections, each sending 100 messages per second, for 30 s."""

from wslocust import Sustained, WebSocketUser


class SustainedUser(WebSocketUser):
    pass


class HighLoad(Sustained):
    connections = 2000
    message_interval = 0.01
    duration = 30.0
