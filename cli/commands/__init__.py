"""One module per command group; each parses, calls one service method, renders."""
