"""Development tools, not shipped: the Grafana dashboard generator, real-server fixtures for tests and benches."""
