"""MQTT: the only code that imports paho. ``client`` (the client factory, ``AckedPublisher``, ``PublishError``),
``topics`` (every topic, built and parsed), ``setpoint`` (the setpoint message), ``fastsock`` (the collector's
receive path on paho internals). Import the submodule you need: ``topics`` and ``setpoint`` load without paho."""
