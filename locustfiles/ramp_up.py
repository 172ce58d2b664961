"""Gradual ramp-up: 0 to 1,000 connections over 30 s, held 30 s, one message per connection per second."""

from wslocust import RampUp, WebSocketUser


class RampUpUser(WebSocketUser):
    pass


class GradualRampUp(RampUp):
    connections = 1000
    ramp_up = 30.0
    duration = 30.0
    message_interval = 1.0
