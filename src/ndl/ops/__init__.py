"""Operating a hub or a datasite: backup and restore (``ndl backup``, ``ndl restore``)."""
