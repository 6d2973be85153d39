"""The tokenvault command line (typer). Thin: parse, call one service method, render."""
