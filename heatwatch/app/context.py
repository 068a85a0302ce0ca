"""What a command needs from the shared package: the config, the registry, a store, logging."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from functools import cached_property

from heatwatch.core.config import Config, load_config
from heatwatch.core.registry import Registry, load_registry
from heatwatch.infra.storage import Store, open_store


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            body.update(extra)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


def setup_logging(cfg: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.general.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.general.log_level)


@dataclass
class App:
    cfg: Config

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> App:
        return cls(load_config(getattr(args, "config", None)))

    @cached_property
    def registry(self) -> Registry:
        return load_registry(self.cfg.registry.homes_csv, self.cfg.registry.stations_csv)

    def open_store(self) -> Store:
        return open_store(self.cfg)

    def operator(self, name: str | None, supervisor: bool = False) -> str:
        """The configured desk user ``--by`` names (approvals, closures, status changes are never free text)."""
        from dispatch.operators import Operators, UnknownOperator
        from heatwatch.core.errors import UsageError

        users = Operators.from_config(self.cfg)
        if not (name or "").strip():
            known = ", ".join(sorted(users.users)) or "none configured: add [desk.operators.\"<name>\"]"
            raise UsageError(f"--by: name the desk user who does this ({known})")
        try:
            return users.require(str(name).strip(), supervisor).name
        except UnknownOperator as exc:
            raise UsageError(f"--by: {exc}") from None
