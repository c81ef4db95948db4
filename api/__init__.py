"""The HTTP API (FastAPI) over the results in PostgreSQL."""
