"""Infrastructure: the stores (SQLite, InfluxDB 1.x and 2.x) and MQTT. Builds on core only."""
