"""The catalogue: dataset metadata, publication and search."""
