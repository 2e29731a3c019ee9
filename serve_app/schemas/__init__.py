"""API schemas (OpenAI-compatible and /api), kept apart from internal config."""
