"""The use cases: one module each, all taking a :class:`meta_tokenvault.context.VaultContext`.

They talk to ports only (never to adapters, the CLI or :mod:`meta_tokenvault.service`), and import each other
only downwards (``run_due`` → ``rotate`` → ``mint`` → ``tokens`` / ``system_users``), so there is no cycle.
"""
