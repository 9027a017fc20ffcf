"""Completeness audits and national indicators (DOMAIN 2.4-2.6, 2.8).

- :mod:`.rulebook`: the rule sets of ``mappings/completeness/*.yaml``, compiled once;
- :mod:`.periods`: audit periods (a year, or from/to dates);
- :mod:`.facts`: what one person's resources say (pure);
- :mod:`.evaluate`: rules applied to one person and period (pure);
- :mod:`.jurisdiction`: county/township/village/institution of a record;
- :mod:`.batch`: reading people from the database in batches, the audit job and its
  stored results (``audit_person``, ``audit_summary``);
- :mod:`.indicators`: FHIR ``Measure`` definitions evaluated into ``MeasureReport``s;
- :mod:`.denominators`: population figures configured per jurisdiction and year.

See docs/completeness.md.
"""
