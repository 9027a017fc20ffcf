"""Write ``docs/settings.md`` from the settings declared in ``hub/config.py``."""

from pathlib import Path

from hub.config import reference

if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
    target.write_text(reference(), encoding="utf-8")
