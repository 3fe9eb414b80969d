"""Alerts: rules evaluated over the stored data, and their notifications delivered.

- :mod:`~ingest.alerts.evaluate`: one evaluation of every rule, in one transaction with the
  states, the history and the outbox rows it writes (SQL in ``eval_statements``).
"""

from ingest.alerts.evaluate import Evaluation, EvaluationContext, evaluate, prepare

__all__ = ["Evaluation", "EvaluationContext", "evaluate", "prepare"]
