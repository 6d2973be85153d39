"""Test support shipped with tokenvault: the Graph API simulator, port fakes, contract suites."""
