"""Device agent: samples sensors, spools readings on disk and forwards them over MQTT or HTTP.

It depends on paho-mqtt and the standard library only, and runs on Python 3.9+.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
