"""Storage backends behind one interface, chosen by ``[storage] backend``."""

from __future__ import annotations

from heatwatch.config import Config
from heatwatch.storage.base import Store, StoreAccessDenied, StoreCapacityError, StoreCorrupt, StoreError, StoreUnavailable

__all__ = ["Store", "StoreAccessDenied", "StoreCapacityError", "StoreCorrupt", "StoreError", "StoreUnavailable", "open_store"]


def open_store(cfg: Config) -> Store:
    backend = cfg.storage.backend
    if backend == "sqlite":
        from heatwatch.storage.sqlite import SqliteStore

        return SqliteStore(cfg.sqlite_path, cfg.sqlite.synchronous)
    if backend == "influxdb1":
        from heatwatch.storage.influxdb1 import Influxdb1Store

        return Influxdb1Store.from_config(cfg)
    from heatwatch.storage.influxdb2 import Influxdb2Store

    return Influxdb2Store.from_config(cfg)
