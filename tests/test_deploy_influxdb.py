"""deploy/influxdb: the init script and the downsampling task (InfluxDB 2.x cannot run here).

The init script runs for real against a stand-in ``influx`` CLI on PATH that records its calls and
keeps buckets in files; the Flux task is checked for well-formedness and for the buckets it names.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tools.dashboards import flux_syntax_problems

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "influxdb"
TASK = DEPLOY / "tasks" / "downsample_hourly.flux"

FAKE_INFLUX = r"""#!/bin/sh
# stand-in for the influx CLI: records calls, keeps buckets as files named after them
echo "$*" >> "$FAKE_DIR/calls.log"
arg() { # value following option $1 in the remaining args
    want="$1"; shift
    while [ $# -gt 0 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done
}
case "$1 $2" in
  "bucket list")
    name="$(arg --name "$@")"
    [ -f "$FAKE_DIR/bucket-$name" ] && echo "$(cat "$FAKE_DIR/bucket-$name")	$name	0s	$(arg --org "$@")"
    exit 0 ;;
  "bucket create")
    name="$(arg --name "$@")"
    echo "id-$name" > "$FAKE_DIR/bucket-$name" ;;
  "task create")
    cp "$(arg --file "$@")" "$FAKE_DIR/task.flux" ;;
  "v1 dbrp") ;;
  *) echo "unexpected influx call: $*" >&2; exit 3 ;;
esac
"""


def test_task_is_well_formed_and_writes_the_hourly_bucket() -> None:
    text = TASK.read_text(encoding="utf-8")
    assert flux_syntax_problems(text) == []
    assert re.search(r'^option task = \{name: "heatwatch-downsample-hourly", every: 1h, offset: \d+m\}$', text, re.M)
    assert 'from(bucket: "heatwatch")' in text and 'to(bucket: "heatwatch_hourly", org: "heatwatch")' in text
    for meas in ("indoor", "station", "weather"):
        assert f'r._measurement == "{meas}"' in text
    assert 'timeSrc: "_start"' in text  # hour stamped at its start, like Store.hourly


def test_init_script_creates_bucket_dbrp_and_task(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "influx").write_text(FAKE_INFLUX, encoding="utf-8")
    (fake / "influx").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "bucket-城市热力").write_text("id-raw\n", encoding="utf-8")  # created by DOCKER_INFLUXDB_INIT_MODE=setup
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "FAKE_DIR": str(state),
        "DOCKER_INFLUXDB_INIT_ORG": "acme-heat",
        "DOCKER_INFLUXDB_INIT_BUCKET": "城市热力",
        "HEATWATCH_HOURLY_RETENTION": "3650d",
        "HEATWATCH_TASK_DIR": str(TASK.parent),
    }
    res = subprocess.run(["bash", str(DEPLOY / "init" / "10-heatwatch.sh")], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    calls = (state / "calls.log").read_text(encoding="utf-8").splitlines()
    assert any(c.startswith("bucket create --org acme-heat --name 城市热力_hourly --retention 3650d") for c in calls)
    assert "v1 dbrp create --org acme-heat --db 城市热力 --rp autogen --bucket-id id-raw --default" in calls
    assert "v1 dbrp create --org acme-heat --db 城市热力 --rp hourly --bucket-id id-城市热力_hourly" in calls
    task = (state / "task.flux").read_text(encoding="utf-8")
    assert 'from(bucket: "城市热力")' in task and 'to(bucket: "城市热力_hourly", org: "acme-heat")' in task
    assert flux_syntax_problems(task) == []

    # a failing CLI call stops the script (set -e): no half-configured database goes unnoticed
    (fake / "influx").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    res = subprocess.run(["bash", str(DEPLOY / "init" / "10-heatwatch.sh")], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode != 0
