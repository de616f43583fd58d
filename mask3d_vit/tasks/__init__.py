"""Tasks: each builds its data, model and metrics, and hands them to the one engine."""
