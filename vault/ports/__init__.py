"""Ports: the Protocols the service talks to. Adapters in :mod:`vault.adapters` implement them;
fakes and contract suites in :mod:`vault.testing` check every implementation the same way."""
