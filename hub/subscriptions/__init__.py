"""R4 criteria-based Subscriptions, evaluated on the change feed by ``hub worker``.

* :mod:`hub.subscriptions.rules` - what a Subscription must be to be stored (criteria,
  channel, endpoint), and who owns it;
* :mod:`hub.subscriptions.notify` - matching changes to Subscriptions and delivering
  the notifications (rest-hook POSTs, websocket pings), with retries;
* :mod:`hub.subscriptions.websocket` - the R4 websocket binding served by the worker.

See ``docs/subscriptions.md``.
"""
