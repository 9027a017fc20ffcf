"""Golden-file comparison for tests: ``HUB_REGEN_GOLDEN=1`` rewrites, otherwise compares."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def assert_golden(data: Any, path: Path) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if os.environ.get("HUB_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path}; run with HUB_REGEN_GOLDEN=1 to create it"
    assert json.loads(text) == json.loads(path.read_text(encoding="utf-8")), f"differs from {path}"
