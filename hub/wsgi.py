"""WSGI entry for production servers: ``gunicorn hub.wsgi:app``."""

from hub import create_app
from hub.app import freeze_startup_objects

app = create_app()
freeze_startup_objects()  # the app's objects stay out of the collector's work
