"""Datasites, their registration and the hub mailbox that carries signed work to them."""
