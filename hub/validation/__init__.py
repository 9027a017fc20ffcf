"""Validation: structure on every write, profiles where claimed or demanded."""
