"""Record linkage: identifier validation and matching across datasites."""
