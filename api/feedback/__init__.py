"""Analyst feedback: labels and the live precision of each detector and rule."""
