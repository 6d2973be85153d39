"""Adapters: implementations of the ports (SQL store, key providers, secret backends, Graph, notifier)."""
