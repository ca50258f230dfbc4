"""Fixtures of the model tests: tiny_text_dir is in tests/conftest.py (the streamer tests use
it too)."""
