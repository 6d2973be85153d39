"""Ports: the Protocols the service talks to. Adapters in :mod:`meta_tokenvault.adapters` implement them;
fakes and contract suites in :mod:`meta_tokenvault.testing` check every implementation the same way."""
