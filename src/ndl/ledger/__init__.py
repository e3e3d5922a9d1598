"""The public register: an append-only, hash-chained, signed log of events."""
