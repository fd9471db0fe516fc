"""Shared contracts every Vigil service depends on: settings, events, topics, Kafka, DB, metrics."""
