"""Transactions: HTTP ingestion to Kafka, lookup, and entity timelines."""
