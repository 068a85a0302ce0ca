"""The service desk (调度室): every work order, from the hotline, MQTT, HTTP or sensors, on the standards' clocks."""
