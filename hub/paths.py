"""Where the hub's data folders are.

``mappings/``, ``profiles/`` and ``conformance/sites/`` live at the top of the
project (they are data that integration engineers edit, not code); the hub
finds them next to its package. Settings override each (see ``hub.config``).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DATA_DIR = PACKAGE_DIR / "data"
MAPPINGS_DIR = PROJECT_DIR / "mappings"
PROFILES_DIR = PROJECT_DIR / "profiles"
SITES_DIR = PROJECT_DIR / "conformance" / "sites"
