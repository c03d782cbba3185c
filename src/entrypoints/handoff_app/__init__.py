"""The service: settings, composition root, HTTP API, delivery worker and CLI."""
