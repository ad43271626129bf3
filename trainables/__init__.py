"""Training methods, one module per method, listed in ``trainables.registry``."""
