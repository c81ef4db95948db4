"""Ingest: Git mirrors and pollers that turn commits into events on the bus."""
