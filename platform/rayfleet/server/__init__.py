"""The control service: FastAPI app, SQLite store, controller loop, Ray Jobs REST API."""
