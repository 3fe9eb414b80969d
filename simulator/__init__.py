"""Virtual device fleets, fault injection and load tests for the platform."""

__version__ = "0.1.0"

__all__ = ["__version__"]
