"""The library hub: a FastAPI app that wires the domains to HTTP."""
