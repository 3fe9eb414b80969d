"""Query API: devices, latest values, ranges, aggregates and export over HTTP."""

__version__ = "0.1.0"

__all__ = ["__version__"]
