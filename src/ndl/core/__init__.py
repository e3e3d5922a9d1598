"""Shared types used by every part of ndl: errors, settings, keys and signed envelopes."""
