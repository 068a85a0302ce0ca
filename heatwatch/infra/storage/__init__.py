"""Storage backends behind one interface, chosen by ``[storage] backend``."""

from __future__ import annotations

from heatwatch.core.config import Config
from heatwatch.infra.storage.base import Store, StoreAccessDenied, StoreCapacityError, StoreCorrupt, StoreError, StoreUnavailable

__all__ = ["Store", "StoreAccessDenied", "StoreCapacityError", "StoreCorrupt", "StoreError", "StoreUnavailable", "open_store"]


def open_store(cfg: Config) -> Store:
    """The backend ``[storage] backend`` names, built from its section of ``cfg``."""
    backend = cfg.storage.backend
    if backend == "sqlite":
        from heatwatch.infra.storage.sqlite import SqliteStore

        return SqliteStore(cfg.sqlite_path, cfg.sqlite.synchronous)
    if backend == "influxdb1":
        from heatwatch.infra.storage.influxdb1 import Influxdb1Store

        return Influxdb1Store.from_config(cfg)
    from heatwatch.infra.storage.influxdb2 import Influxdb2Store

    return Influxdb2Store.from_config(cfg)
