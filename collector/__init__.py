"""heatwatch collector: MQTT in, validated readings out to the store, acknowledged only once durable."""
