"""The terminology service: the hub's code systems, value sets and code maps, served and used.

``content`` loads what is served (R4 core, national tables, the hub's own systems),
``model`` and ``maps`` index code systems and ConceptMaps, ``expansion`` evaluates
``ValueSet.compose``, ``service`` is the in-process API the adapters, the validator and
search use, ``operations`` the R4 REST operations, ``authoring`` and ``cli`` the
``hub terminology`` commands (docs/terminology.md).
"""
