"""Thin click commands: options -> a library call -> printed output. Only cli.py imports them."""
