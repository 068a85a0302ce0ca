"""Low-temperature alerts to dispatch as work orders: rules, dedupe and storms, sinks with an outbox.

Below the control loop: ``control`` uses this package, and this package imports nothing else of
``control`` (pyproject's import-linter contract ``alerts-below-control``).
"""
