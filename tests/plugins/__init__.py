"""pytest plugins of the test suite (registered in tests/conftest.py)."""
