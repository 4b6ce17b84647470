"""bricks: a flow-aware packet broker (load-balance, duplicate, merge, filter) for Linux."""
__version__ = "0.1.0"
