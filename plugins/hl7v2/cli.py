"""``hub mllp serve`` and ``hub mllp send``: the adapter's commands (``register_cli_commands``).

``serve`` is the MLLP listener: each message is routed to its site by MSH-3/MSH-4,
stored and acknowledged (:mod:`.listener`). ``send`` is the integration
engineer's test sender: each file is sent as one message and its ACK printed.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from fhirhub_plugins.hl7v2.mllp import DEFAULT_MAX_FRAME
from fhirhub_plugins.hl7v2.mllp import MLLPServer
from fhirhub_plugins.hl7v2.mllp import ack_code
from fhirhub_plugins.hl7v2.mllp import send
from hub.plugin_api import current_hub


@click.group()
def mllp():
    """HL7 v2 over MLLP."""


@mllp.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2575, show_default=True, type=int)
def mllp_serve(host, port):
    """Listen for HL7 v2 messages; route each to its site by MSH-3/MSH-4."""
    from fhirhub_plugins.hl7v2.listener import make_handler

    the_hub = current_hub()
    # Frames up to INGEST_MAX_BYTES reach the handler, which refuses what is over the limits.
    max_frame = max(DEFAULT_MAX_FRAME, int(the_hub.config.get("INGEST_MAX_BYTES") or 0))
    server = MLLPServer((host, port), make_handler(the_hub), max_frame=max_frame).start()
    click.echo(f"MLLP listening on {host}:{server.port} for {len(the_hub.sites)} site(s)", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()


@mllp.command("send")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2575, show_default=True, type=int)
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Seconds per ACK.")
def mllp_send(files, host, port, timeout):
    """Send each FILE as one HL7 v2 message and print its ACK.

    Line ends are sent as HL7's segment separator (CR), so files saved with
    LF or CRLF line ends work. Exit status 1 when any message is not accepted
    (AE/AR) or cannot be sent.
    """
    failed = 0
    for path in files:
        body = path.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r")
        try:
            ack = send(host, port, body + b"\r", timeout=timeout)
        except OSError as err:
            click.echo(f"{path}: not sent: {err}", err=True)
            failed += 1
            continue
        code = ack_code(ack)
        click.echo(f"{path}: {code}")
        click.echo(ack.replace(b"\r", b"\n").decode("utf-8", errors="replace").rstrip("\n"))
        if code not in ("AA", "CA"):
            failed += 1
    if failed:
        raise SystemExit(1)


COMMANDS = [mllp]
