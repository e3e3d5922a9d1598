"""Synthetic demonstration data for the National Data Library."""
