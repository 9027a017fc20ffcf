"""A worker process for the kill tests: ``python -m tests.subscriptions.child_worker MODE``.

The configuration comes as JSON on the command line. The process says where it is on
stdout and then waits (for the SIGKILL the test sends) at the point the test names:

* ``mid-match``: inside the matching transaction, after the first notification is queued;
* ``after-match``: the matching transaction committed, nothing delivered yet;
* ``deliver``: delivering (the test's receiver holds the POST while the test kills us).
"""

from __future__ import annotations

import json
import sys

from hub.kernel import Hub
from hub.storage.subscriptions import Matching
from hub.subscriptions import notify


def _wait_to_be_killed(said: str) -> None:
    print(said, flush=True)
    sys.stdin.read()  # the test kills us; it never writes


def main() -> None:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    hub = Hub(config, config["INSTANCE_PATH"])
    if mode == "mid-match":
        queue = Matching.queue

        def queue_then_wait(self, subscription_id, change):
            queue(self, subscription_id, change)
            _wait_to_be_killed("queued one")

        Matching.queue = queue_then_wait
        notify.match(hub)
    elif mode == "after-match":
        _wait_to_be_killed(f"matched {notify.match(hub)}")
    elif mode == "deliver":
        print(json.dumps(notify.deliver(hub)), flush=True)


if __name__ == "__main__":
    main()
