"""Enqueue a report, then poll its status by id (from any web process)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from relay import AsyncResult, TaskFailed

from .tasks import render_report

reports = Blueprint("reports", __name__)


@reports.post("/reports/<int:report_id>")
def enqueue(report_id: int) -> tuple[dict[str, Any], int]:
    handle = render_report.delay(report_id, pages=request.args.get("pages", 1, type=int))
    return {"id": handle.id, "status_url": f"/tasks/{handle.id}"}, 202


@reports.get("/tasks/<task_id>")
def status(task_id: str) -> dict[str, Any]:
    handle = AsyncResult(task_id, task=render_report.task_name)
    state = handle.status()  # never blocks: pending, started, succeeded or failed
    body: dict[str, Any] = {"id": task_id, "status": state.value}
    if state.ready:
        try:
            body["result"] = handle.result(timeout=0)
        except TaskFailed as failure:
            body["error"] = f"{failure.type}: {failure.message}"
    return body
