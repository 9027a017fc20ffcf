"""Bulk data: ``$export`` (FHIR Bulk Data Access v2), asynchronous requests and NDJSON import.

* :mod:`hub.bulk.kickoff` - the kick-off requests: their parameters checked, a job stored;
* :mod:`hub.bulk.export` - what a worker runs for a job: the search engine's pages, as the
  caller may see them, streamed into NDJSON files;
* :mod:`hub.bulk.status` - status polls, manifests, cancellation and expiry;
* :mod:`hub.bulk.files` - the job folders and the split NDJSON writer;
* :mod:`hub.bulk.importer` - ``hub import``: NDJSON through the FHIR service, resumable.

Jobs live in the ``bulk_job`` table (:mod:`hub.storage.jobs`), files under ``BULK_DIR``.
"""
