"""The inbox API for integration engineers (JSON, not FHIR): list, show, replay.

GET  /api/inbox?status=failed&site=S&limit=50&before=ID
GET  /api/inbox/counts
GET  /api/inbox/<id>            (add ?body=true for the raw payload, base64)
POST /api/inbox/<id>/replay
POST /api/inbox/replay?status=failed[&site=S]
"""

from __future__ import annotations

import base64

from flask import Blueprint
from flask import jsonify
from flask import request

from hub import outcomes
from hub.api.context import get_hub

bp = Blueprint("inbox", __name__, url_prefix="/api/inbox")


def _int(name: str, default: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdecimal():
        raise outcomes.bad_request(f"{name} must be a whole number", name)
    return int(value)


@bp.get("")
def list_items():
    inbox = get_hub().pipeline.inbox
    status = request.args.getlist("status") or None
    items = inbox.list(
        status=status,
        site=request.args.get("site"),
        limit=_int("limit", 50),
        before_id=_int("before"),
    )
    return jsonify([i.summary() for i in items])


@bp.get("/counts")
def counts():
    return jsonify(get_hub().pipeline.inbox.counts())


@bp.get("/<int:item_id>")
def show(item_id: int):
    item = get_hub().pipeline.inbox.get(item_id, with_body=request.args.get("body") == "true")
    if item is None:
        raise outcomes.not_found(f"inbox item {item_id} does not exist")
    out = item.summary()
    if item.body is not None:
        out["body_base64"] = base64.b64encode(item.body).decode()
    return jsonify(out)


@bp.post("/<int:item_id>/replay")
def replay_one(item_id: int):
    with as_pipeline():
        items = get_hub().pipeline.replay([item_id])
    return jsonify([i.summary() for i in items])


@bp.post("/replay")
def replay_many():
    pipeline = get_hub().pipeline
    status = request.args.getlist("status") or ["failed"]
    site = request.args.get("site")
    ids = [i.id for i in reversed(pipeline.inbox.list(status=status, site=site, limit=100000))]
    with as_pipeline():
        items = pipeline.replay(ids)
    return jsonify(
        {
            "replayed": len(items),
            "statuses": {
                s: sum(1 for i in items if i.status == s) for s in {i.status for i in items}
            },
        }
    )


def as_pipeline():
    """Replays map and store as the hub, exactly as the first processing did (the operator was
    authorized for this API by ``hub.security.guard.require_operator``; the request is audited)."""
    from hub.security.principal import acting_as

    return acting_as(None, {"interaction": "replay"})


deliveries = Blueprint("deliveries", __name__, url_prefix="/api/deliveries")


@deliveries.get("")
def list_deliveries():
    from hub.outbound import list_deliveries as _list

    return jsonify(
        _list(get_hub(), request.args.get("status"), request.args.get("site"), _int("limit", 100))
    )


@deliveries.post("/<int:delivery_id>/retry")
def retry_delivery(delivery_id: int):
    from hub.outbound import retry

    if not retry(get_hub(), delivery_id):
        raise outcomes.not_found(f"delivery {delivery_id} is not dead or pending")
    return jsonify({"id": delivery_id, "status": "pending"})
