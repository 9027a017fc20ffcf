"""The curl examples of docs/binary.md, run as written against a live hub (both backends)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import requests

DOC = Path(__file__).resolve().parents[2] / "docs" / "binary.md"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)) * 8 + b"%%EOF\n"


def _script() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1 and "curl" in blocks[0]
    return blocks[0]


def test_documented_upload_and_download_work(live_server, tmp_path):
    patient = requests.post(
        f"{live_server.fhir}/Patient",
        json={"resourceType": "Patient"},
        headers={**live_server.headers, "Content-Type": "application/fhir+json"},
        timeout=30,
    ).json()["id"]
    (tmp_path / "letter.pdf").write_bytes(PDF)
    cda = b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>\n'
    (tmp_path / "document.xml").write_bytes(cda)
    env = {
        **os.environ,
        "FHIR": live_server.fhir,
        "TOKEN": live_server.token,
        "PATIENT": patient,
    }
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert (tmp_path / "copy.pdf").read_bytes() == PDF
    assert b'"resourceType":"Binary"' in run.stdout
    kept = requests.get(
        f"{live_server.fhir}/Binary/partner-doc-1", headers=live_server.headers, timeout=30
    )
    assert kept.content == cda and kept.headers["Content-Type"] == "application/xml"
