"""Anomalies: filtered, keyset-paginated listing and detail."""
