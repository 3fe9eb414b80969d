"""Alerts: rules evaluated over the stored data, and their notifications delivered.

- :mod:`~ingest.alerts.evaluate`: one evaluation of every rule, in one transaction with the
  states, the history and the outbox rows it writes (SQL in ``eval_statements``);
- :mod:`~ingest.alerts.delivery`: the outbox sent to webhooks, at least once and in order
  (SQL in ``outbox_statements``; bodies and signatures in ``render``);
- :mod:`~ingest.alerts.service`: both on a schedule in worker 0, by one process at a time.
"""

from ingest.alerts.delivery import Deliverer, DeliveryRound, RetryPolicy
from ingest.alerts.evaluate import Evaluation, EvaluationContext, evaluate, prepare
from ingest.alerts.service import EVALUATOR_LOCK, AlertService

__all__ = [
    "EVALUATOR_LOCK",
    "AlertService",
    "Deliverer",
    "DeliveryRound",
    "Evaluation",
    "EvaluationContext",
    "RetryPolicy",
    "evaluate",
    "prepare",
]
