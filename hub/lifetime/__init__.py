"""The lifetime file: one person's records across sites, linked, merged and summarised.

Modules, by concern:

* :mod:`hub.lifetime.links`: which Patient records are one person (``Patient.link``, merges);
* :mod:`hub.lifetime.everything`: ``Patient/{id}/$everything`` over the linked records;
* :mod:`hub.lifetime.merge`: ``Patient/$merge`` and ``Patient/$unmerge`` (with Provenance),
  over :mod:`hub.lifetime.journal` (what an operation wrote, for its Provenance and undo);
* :mod:`hub.lifetime.matching`: ``Patient/$match`` candidates;
* :mod:`hub.lifetime.document` and :mod:`hub.lifetime.html`: the resident health record
  (居民健康档案) as a FHIR document and as a printable page;
* :mod:`hub.lifetime.colours`: five-colour Flags kept up to date from the evidence;
* :mod:`hub.lifetime.groups`: household (一户一档) and village (一村一卷) Groups;
* :mod:`hub.lifetime.consumer`: the change-feed consumer ``hub worker`` runs;
* :mod:`hub.lifetime.ingest`: merges (ADT A40), colours and Groups inside an ingested message;
* :mod:`hub.lifetime.exports`: the records of the patients holding a code, for adapters' reports;
* :mod:`hub.lifetime.operations`: the operations as the hub registers them, and
  :mod:`hub.lifetime.views` the printable page at ``/ui/patients/<id>/lifetime-file``;
* :mod:`hub.lifetime.visibility`: how a caller's visibility filter reaches every answer.

See docs/lifetime-file.md.
"""
