"""Golden-file comparison for tests: ``HUB_REGEN_GOLDEN=1`` rewrites, otherwise compares.

A mismatch lists the JSON paths that differ (``hub.testing.json_diff``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub.testing import json_diff
from hub.testing import regenerate_requested


def assert_golden(data: Any, path: Path) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if regenerate_requested():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path}; run with HUB_REGEN_GOLDEN=1 to create it"
    differences = json_diff(json.loads(path.read_text(encoding="utf-8")), json.loads(text))
    assert not differences, f"differs from {path}:\n  " + "\n  ".join(
        str(d) for d in differences[:30]
    )
