"""Spike: 500 connections at once; each sends a burst of 10 messages every 2 s, five times; then all drop."""

from locust import constant, task

from wslocust import Spike, WebSocketUser, time_scaled


class SpikeUser(WebSocketUser):
    wait_time = time_scaled(constant(2))

    @task
    def burst(self):
        for _ in range(10):
            self.echo()


class FiveHundredAtOnce(Spike):
    connections = 500
    duration = 10.0
