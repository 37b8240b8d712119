"""memplace: per-object memory placement and post-mortem thread state."""

__version__ = "0.1.0"
