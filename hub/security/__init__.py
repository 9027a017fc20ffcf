"""Authentication, authorization, audit and hardening (``docs/security.md``).

* :mod:`hub.security.scopes` - SMART scopes, compiled for the per-request check;
* :mod:`hub.security.labels` - security labels and the grants that open them;
* :mod:`hub.security.principal` - who is asking (:class:`Principal`) and the request context;
* :mod:`hub.security.guard` - the checks on reads, searches, writes and what they return;
* :mod:`hub.security.tokens`, :mod:`hub.security.clients`, :mod:`hub.security.services` -
  JWT access tokens, rotatable signing keys, OAuth2 clients;
* :mod:`hub.security.assertions` - ``private_key_jwt`` client assertions (backend services);
* :mod:`hub.security.smart` - SMART App Launch for patient-facing apps: the authorization
  request, the person's Consent, codes, refresh tokens (pages: ``hub.api.authorize``);
* :mod:`hub.security.users`, :mod:`hub.security.hashing`, :mod:`hub.security.csrf` - the web
  pages' accounts (and people's own accounts), lockout, password hashing and CSRF protection;
* :mod:`hub.security.auditing`, :mod:`hub.security.audit_search` - requests and writes as audit
  events (the hash chain itself is :mod:`hub.audit`), and the auditors' search;
  :mod:`hub.security.audit_trail`, :mod:`hub.security.audit_verify` - the chain's key and
  checkpoints outside the database, and ``hub audit verify``;
* :mod:`hub.security.web` - the Flask layer; :mod:`hub.security.ratelimit`,
  :mod:`hub.security.logmask` - rate limits and resident ID masking in logs and exports;
* :mod:`hub.security.cli` - ``hub clients|token|keys|users|audit``.
"""
