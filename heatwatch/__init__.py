"""heatwatch: district-heating telemetry, analytics and control.

Layers, each importing only those below it (checked by import-linter in ``make test``):
``heatwatch.app.context`` (the command, run, demo, status, report) → the parts ``collector``, ``analytics``,
``control``, ``simulators`` → ``heatwatch.infra`` (storage, MQTT) → ``heatwatch.core``.
"""

__version__ = "0.1.0"
