// Hourly means of the raw readings into the long-retention bucket (InfluxDB 2.x task).
// Created by init/10-heatwatch.sh, which replaces the bucket and org names below when deploy/.env
// uses others. Each run recomputes the last two hours, so readings that arrive late (spooled by a
// collector during an outage) are included; rewriting the same series and hour is idempotent.
// Points are stamped at the start of the hour, like heatwatch's Store.hourly.
option task = {name: "heatwatch-downsample-hourly", every: 1h, offset: 5m}

from(bucket: "heatwatch")
  |> range(start: -2h)
  |> filter(fn: (r) => r._measurement == "indoor" or r._measurement == "station" or r._measurement == "weather")
  |> filter(fn: (r) => r._field != "issued_s")
  |> aggregateWindow(every: 1h, fn: mean, createEmpty: false, timeSrc: "_start")
  |> to(bucket: "heatwatch_hourly", org: "heatwatch")
