"""Processors: consumers that apply commit events to PostgreSQL exactly once in effect."""
