"""The work a web request hands off: rendering a report takes a while, so the web
process enqueues it (``render_report.delay(...)``) and answers at once; a worker
(``relay-cli run``) renders it; the web process (or its client) polls the handle
until it is done. The seed this follows: a Flask Web API run through Cloud
Pub/Sub asynchronously, the caller polling until the request is processed.
"""

from __future__ import annotations

import logging
import time

from relay import UnrecoverableError, task

logger = logging.getLogger("tasks-example")

#: Seconds one page takes to render (the tests make it shorter).
PAGE_SECONDS = 0.2


@task
def render_report(report_id: int, pages: int = 3) -> dict[str, object]:
    """Render a report; its topic is ``subs.render_report`` (module and function)."""
    if pages < 1:
        # Retrying would not help: fail it once, for good.
        raise UnrecoverableError(f"report {report_id}: a report needs at least one page")
    for page in range(1, pages + 1):
        time.sleep(PAGE_SECONDS)
        logger.info("report %s: page %d of %d rendered", report_id, page, pages)
    return {"report": report_id, "pages": pages, "url": f"/reports/{report_id}.pdf"}
