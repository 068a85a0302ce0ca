"""Shared fixtures: real Mosquitto and influxd servers, started per test session on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.servers import Influxd, Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A shared broker; tests use unique topic prefixes / client ids to stay apart."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of the test's own, for tests that stop or restart it."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """A shared influxd; tests use their own database names."""
    server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    yield server
    server.stop()


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An influxd of the test's own, for tests that stop it mid-stream."""
    server = Influxd(tmp_path / "influxd").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _stop_leftover_collectors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that fails before ``col.stop()`` must not leave a collector's threads logging into later tests."""
    from collector.service import Collector

    started: list[Collector] = []
    real_start = Collector.start

    def start(self: Collector) -> Collector:
        started.append(self)
        return real_start(self)

    monkeypatch.setattr(Collector, "start", start)
    yield
    for col in started:
        col.stop(timeout=5.0)


# Property tests: under CI the examples are derived from each test (derandomize), so a run on a clean machine
# is repeatable and a landing never depends on the luck of the draw; locally they explore with fresh seeds.
# Counter-examples found locally are pinned with @example in the test.
def _hypothesis_profiles() -> None:
    import os

    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        settings.load_profile("ci")


_hypothesis_profiles()
