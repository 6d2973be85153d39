"""The use cases: one module each, all taking a :class:`vault.context.VaultContext`.

They talk to ports only (never to adapters, the CLI or :mod:`vault.service`), and import each other
only downwards (``run_due`` → ``rotate`` → ``mint`` → ``tokens`` / ``system_users``), so there is no cycle.
"""
