"""The hub's version: a leaf module, so the capability statement and the OpenAPI
description can name it without importing the :mod:`hub` package's app factory."""

__version__ = "0.1.0"
