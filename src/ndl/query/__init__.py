"""Query specifications shared by the hub (validation) and the datasite (execution)."""
