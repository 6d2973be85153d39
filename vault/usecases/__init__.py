"""The use cases of tokenvault, one module each; each talks to ports and plain callables only."""
