"""Registry rows per second for parse + map alone (no storage).

    python bench/registry_throughput.py [ROWS]

Generates ROWS synthetic rows (default 10,000), writes them as UTF-8 CSV, GBK
CSV and XLSX in memory, and times ``map_inbound`` on each (read, validate,
map to FHIR, content hashes). Prints rows/second per shape.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhirhub_plugins import va_registry  # noqa: E402
from hub.mapping import InboundMessage  # noqa: E402
from hub.mapping import MappingContext  # noqa: E402
from hub.mapping import load_code_maps  # noqa: E402
from hub.paths import MAPPINGS_DIR  # noqa: E402
from tests.va_registry.samples import csv_bytes  # noqa: E402
from tests.va_registry.samples import generated_rows  # noqa: E402
from tests.va_registry.samples import xlsx_bytes  # noqa: E402


def main(count: int) -> None:
    rows = generated_rows(count)
    maps = load_code_maps([MAPPINGS_DIR])
    site = types.SimpleNamespace(
        name="bench", adapter="va_registry", organization={}, plugin_config=lambda name: {}
    )
    shapes = {
        "csv utf-8 bom": csv_bytes(rows, "utf-8-sig"),
        "csv gbk": csv_bytes(rows, "gbk"),
        "xlsx": xlsx_bytes(rows),
    }
    for shape, body in shapes.items():
        context = MappingContext(site, maps)
        started = time.perf_counter()
        bundle = va_registry.map_inbound(
            message=InboundMessage("va-registry", body, site), context=context
        )
        elapsed = time.perf_counter() - started
        errors = sum(1 for i in context.issues if i["severity"] == "error")
        print(
            f"{shape:14} {count} rows, {len(bundle['entry'])} resources, {errors} row errors: "
            f"{elapsed:.2f} s, {count / elapsed:,.0f} rows/s"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
