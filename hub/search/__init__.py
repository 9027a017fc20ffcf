"""FHIR R4 search: parameter registry, indexer, query engine and searchset Bundles.

* :mod:`hub.search.registry` - the official R4 SearchParameters plus custom ones;
* :mod:`hub.search.indexer` - resource -> typed index rows (``sp_*``, ``compartment``);
* :mod:`hub.search.engine` - search request -> SQL -> :class:`~hub.search.engine.SearchResult`;
* :mod:`hub.search.bundle` - the searchset Bundle, spliced from stored JSON texts;
* :mod:`hub.search.elements` - ``_summary`` and ``_elements``;
* :mod:`hub.search.reindex` - recompute index rows after SearchParameters change.
"""
