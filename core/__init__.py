"""What the services share: settings plumbing, the broker URL and link, the device registry.

``ingest``, ``api`` and ``simulator`` import this package; it imports none of them
(import-linter contracts in pyproject.toml keep it so).
"""
