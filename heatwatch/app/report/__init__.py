"""``heatwatch report``: one self-contained HTML page with plots, for people who do not open Grafana."""

from __future__ import annotations

from heatwatch.app.report.build import build_report

__all__ = ["build_report"]
