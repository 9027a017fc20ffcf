"""The hub's built-in adapters, installed as ``fhirhub_plugins``.

Each sub-package is one adapter and registers through the ``fhirhub``
entry-point group, exactly as a third-party adapter would.
"""
