"""heatwatch: district-heating telemetry, analytics and control.

Layers, each importing only those below it (import-linter contracts in pyproject.toml, run by ``make lint``):
``heatwatch.app`` (the command, run, demo, status, report) → the parts ``collector``, ``analytics``,
``control``, ``simulators`` → ``heatwatch.infra`` (storage, MQTT) → ``heatwatch.core``. This module imports
nothing, so importing ``heatwatch.core`` loads no other layer.
"""

__version__ = "0.1.0"
