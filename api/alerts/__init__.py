"""The alerting service's notification log and silences, over HTTP."""
