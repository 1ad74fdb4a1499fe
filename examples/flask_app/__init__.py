"""A Flask app that hands reports to a relay worker and reports their status.

    flask --app examples.flask_app relay run --emulator    # the worker (from the repo root)
    flask --app examples.flask_app run                      # the web app

See README.md next to this file.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from flask import Flask

from relay.results import ResultsMiddleware

from . import tasks  # noqa: F401  (declares the task and the subscription)
from .extensions import relay_ext
from .results import SQLiteResults
from .views import reports


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        REPORTS_URL="https://reports.example.com",
        # Any path the web processes and the worker share (one machine, here).
        RESULTS_DATABASE=os.path.join(tempfile.gettempdir(), "relay-flask-example.sqlite3"),
        # flask-gcp-pubsub's key works; so would RELAY = {"GC_PROJECT_ID": ...}.
        PUBSUB_PROJECT_ID="relay-flask-example",
    )
    app.config.from_prefixed_env()  # FLASK_RESULTS_DATABASE=... and so on
    if test_config:
        app.config.update(test_config)
    # Outcomes go to a store that every web process and the worker can read.
    app.config.setdefault("RELAY", {})["MIDDLEWARE"] = [
        ResultsMiddleware(SQLiteResults(app.config["RESULTS_DATABASE"])),
        "relay.contrib.logging_middleware.LoggingMiddleware",
    ]
    relay_ext.init_app(app)
    app.register_blueprint(reports)
    return app
