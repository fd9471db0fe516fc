"""Cases: anomalies grouped per transaction and per entity, with status, assignee, notes and verdicts."""
