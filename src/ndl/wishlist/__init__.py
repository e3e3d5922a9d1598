"""The data wishlist: what people want to exist, so demand for data can be seen."""
