"""Conformance: site kits (``hub conformance run``) and FHIR endpoint checks (``check-endpoint``).

:mod:`hub.conformance.runner` runs kit cases, :mod:`hub.conformance.endpoint`
tests a FHIR server against its own CapabilityStatement, and
:mod:`hub.conformance.reports` writes both kinds of result as a console
summary, JUnit XML and one self-contained HTML page.
"""
