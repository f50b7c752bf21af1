"""Shared pytest fixtures (the mock's own are in tests/mock/conftest.py)."""
