"""Dashboard figures: today's summary and trends over time."""
