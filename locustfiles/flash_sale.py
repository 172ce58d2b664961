"""E-commerce flash sale: 10,000 users join within 5 s, a message every 100 ms each, for 5 minutes."""

from wslocust import RampUp, WebSocketUser


class Shopper(WebSocketUser):
    pass


class FlashSale(RampUp):
    connections = 10_000
    ramp_up = 5.0
    message_interval = 0.1
    duration = 300.0
