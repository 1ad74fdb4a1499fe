"""The work the web app hands to the worker, and a subscription of its own."""

from __future__ import annotations

from typing import Any

from flask import current_app

import relay
from relay import UnrecoverableError

from .extensions import relay_ext


@relay_ext.task
def render_report(report_id: int, pages: int = 1) -> dict[str, Any]:
    """Runs on the worker, inside an app context: ``current_app`` is the app."""
    if pages < 1:
        raise UnrecoverableError(f"report {report_id}: a report needs at least one page")
    url = f"{current_app.config['REPORTS_URL']}/{report_id}.pdf"
    relay.publish("report-events", {"report": report_id, "url": url})
    return {"report": report_id, "pages": pages, "url": url}


@relay_ext.sub("report-events")
def announce_report(data: Any, **attrs: str) -> None:
    """A plain subscription; it uses ``current_app`` too."""
    current_app.logger.info("report %s ready", data["report"])
    print(f"{current_app.name}: report {data['report']} is ready at {data['url']}", flush=True)
