"""The datasite agent an organisation runs next to its data (outbound connections only)."""
