"""Low-temperature alerts to dispatch as work orders: rules, dedupe and storms, sinks with an outbox."""
