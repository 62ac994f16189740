"""clrepro: a reproducible replication pipeline for continual learning."""
__version__ = "0.1.0"
