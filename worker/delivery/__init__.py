"""Delivery: everything between "an event was detected" and "its rules' steps were done once".

- :mod:`~worker.delivery.events` keeps events in the state store so broker messages carry ids only.
- :mod:`~worker.delivery.dispatch` matches an event to rules (dedupe, loop guard, circuit breaker).
- :mod:`~worker.delivery.runner` runs one rule on one event, step by step, through the
  :mod:`~worker.delivery.ledger`, recording :mod:`~worker.delivery.history` and
  :mod:`~worker.delivery.deadletters`.
"""
