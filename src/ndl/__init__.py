"""ndl: a federated National Data Library."""

__version__ = "0.1.0"
