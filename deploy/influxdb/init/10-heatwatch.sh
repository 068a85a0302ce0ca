#!/bin/bash
# Runs once, inside the influxdb:2.7 container, after DOCKER_INFLUXDB_INIT_MODE=setup created the
# org, the raw bucket (retention DOCKER_INFLUXDB_INIT_RETENTION) and the admin token.
# Adds: the hourly bucket, DBRP mappings so InfluxQL (Grafana's InfluxQL datasource) reads both
# buckets as database "<bucket>" with retention policies "autogen" and "hourly", and the
# downsampling task.
set -euo pipefail

ORG="${DOCKER_INFLUXDB_INIT_ORG:?}"
BUCKET="${DOCKER_INFLUXDB_INIT_BUCKET:?}"
HOURLY="${BUCKET}_hourly"
HOURLY_RETENTION="${HEATWATCH_HOURLY_RETENTION:-0}"  # 0 = keep forever
TASK_FILE="${HEATWATCH_TASK_DIR:-/etc/heatwatch/influx-tasks}/downsample_hourly.flux"

bucket_id() {
    influx bucket list --org "$ORG" --name "$1" --hide-headers | awk '{print $1}'
}

if [ -z "$(bucket_id "$HOURLY" || true)" ]; then
    influx bucket create --org "$ORG" --name "$HOURLY" --retention "$HOURLY_RETENTION" \
        --description "heatwatch hourly means (downsampled by task heatwatch-downsample-hourly)"
fi

influx v1 dbrp create --org "$ORG" --db "$BUCKET" --rp autogen --bucket-id "$(bucket_id "$BUCKET")" --default
influx v1 dbrp create --org "$ORG" --db "$BUCKET" --rp hourly --bucket-id "$(bucket_id "$HOURLY")"

task="$(mktemp)"
sed -e "s/from(bucket: \"heatwatch\")/from(bucket: \"${BUCKET}\")/" \
    -e "s/to(bucket: \"heatwatch_hourly\", org: \"heatwatch\")/to(bucket: \"${HOURLY}\", org: \"${ORG}\")/" \
    "$TASK_FILE" > "$task"
influx task create --org "$ORG" --file "$task"
rm -f "$task"
echo "heatwatch: bucket $HOURLY, DBRP $BUCKET/autogen + $BUCKET/hourly, task heatwatch-downsample-hourly created"
