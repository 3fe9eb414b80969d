"""Helpers shared by the test suite: a TCP proxy for outages and database utilities."""
