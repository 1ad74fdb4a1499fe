"""``examples/cloud_run``: the same handlers pulled locally and pushed on Cloud Run.

Each part runs the example as it runs for real, as processes: ``relay-cli run`` on
the emulator; ``relay-cli plan --apply`` then ``uvicorn shop.main:app``, fed by the
emulator's pushes; and the push app with token verification on, fed requests signed
as Pub/Sub signs them (a local key and certificate set). Its ``service.yaml`` is
checked against relay's settings.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

import relay
from relay.cli import READY
from relay.emulator import free_port
from tests.conftest import EMULATOR_PROJECT
from tests.push.helpers import Signer, cert_server
from tests.support.processes import LoggedProcess

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cloud_run"
PUSHER = "shop-pusher@relay-tests.iam.gserviceaccount.com"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RELAY_", "SHOP_")) and k != "PUBSUB_EMULATOR_HOST"}
    env.update(RELAY_GC_PROJECT_ID=EMULATOR_PROJECT, PYTHONUNBUFFERED="1", **extra)
    return env


def running(log: Path, env: dict[str, str], *command: str) -> LoggedProcess:
    """``python -m COMMAND`` of the example, run from its directory (stopped on
    leaving a ``with`` block)."""
    return LoggedProcess([sys.executable, "-m", *command], log, cwd=EXAMPLE, env=env,
                         name=command[0])


def publish(prefix: str, data: dict[str, Any]) -> None:
    settings = relay.Settings.load(environ={}, gc_project_id=EMULATOR_PROJECT,
                                   topic_prefix=prefix)
    app = relay.App(settings)
    try:
        app.publisher.publish("orders", data, attrs={"source": "test"}, blocking=True)
    finally:
        app.close()


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)


@pytest.mark.emulator
def test_locally_the_handlers_are_pulled(
    pubsub_emulator: Any, tmp_path: Path, unique_name: Any
) -> None:
    prefix = unique_name("local")
    env = environment(PUBSUB_EMULATOR_HOST=pubsub_emulator.address,
                      RELAY_TOPIC_PREFIX=prefix, RELAY_SUB_PREFIX=prefix)
    with running(tmp_path / "run.log", env, "relay.cli", "run", "--subs", "shop.subs") as worker:
        worker.wait_for(READY)
        assert "push" not in worker.output()  # no SHOP_PUSH_ENDPOINT: pull subscriptions
        publish(prefix, {"id": 7})
        worker.wait_for("order 7 stored (test)")
        assert worker.stop() == 0, worker.output()


@pytest.mark.emulator
def test_on_cloud_run_the_emulator_pushes_to_the_service(
    pubsub_emulator: Any, tmp_path: Path, unique_name: Any
) -> None:
    prefix = unique_name("pushed")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/pubsub"
    # The emulators send no token: verification is off here (the next test has it on).
    env = environment(PUBSUB_EMULATOR_HOST=pubsub_emulator.address, RELAY_TOPIC_PREFIX=prefix,
                      RELAY_SUB_PREFIX=prefix, SHOP_PUSH_ENDPOINT=endpoint,
                      RELAY_PUSH_AUTH="off")
    applied = subprocess.run(
        [sys.executable, "-m", "relay.cli", "plan", "--apply", "--subs", "shop.subs"],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"push: endpoint '{endpoint}'" in applied.stdout and "Applied the plan" in applied.stdout

    with running(tmp_path / "uvicorn.log", env, "uvicorn", "shop.main:app", "--host",
                 "127.0.0.1", "--port", str(port)) as service:
        service.wait_for("Uvicorn running")
        assert "PUSH AUTHENTICATION IS OFF" in service.output()
        publish(prefix, {"id": 8})
        publish(prefix, {"no": "id"})  # UnrecoverableError: dead-lettered, acked
        service.wait_for("order 8 stored (test)")
        service.wait_for("failed (dead_letter)")


def test_on_cloud_run_requests_are_verified_before_anything_runs(tmp_path: Path) -> None:
    signer = Signer()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/pubsub"
    with cert_server({signer.key_id: signer.cert_pem}) as (certs_url, _):
        env = environment(SHOP_PUSH_ENDPOINT=endpoint, RELAY_PUSH_AUDIENCE=endpoint,
                          RELAY_PUSH_SERVICE_ACCOUNT=PUSHER, RELAY_PUSH_CERTS_URL=certs_url)
        with running(tmp_path / "uvicorn.log", env, "uvicorn", "shop.main:app", "--host",
                     "127.0.0.1", "--port", str(port)) as service:
            service.wait_for("Uvicorn running")
            body = json.dumps({
                "message": {"data": base64.b64encode(b'{"id": 9}').decode(),
                            "attributes": {"source": "cloud-run"}, "messageId": "9",
                            "publishTime": "2026-12-05T10:00:00Z"},
                "subscription": f"projects/{EMULATOR_PROJECT}/subscriptions/orders",
            }).encode()
            json_type = {"content-type": "application/json"}
            assert post(endpoint, body, json_type) == 401  # no token
            wrong = signer.token(aud=endpoint, email="someone@else.iam.gserviceaccount.com")
            assert post(endpoint, body, {**json_type, "authorization": f"Bearer {wrong}"}) == 403
            assert "order 9 stored" not in service.output()  # nothing ran for either

            token = signer.token(aud=endpoint, email=PUSHER)
            assert post(endpoint, body, {**json_type, "authorization": f"Bearer {token}"}) == 200
            service.wait_for("order 9 stored (cloud-run)")


def test_the_service_manifest_runs_the_push_app_with_relay_settings() -> None:
    manifest = yaml.safe_load((EXAMPLE / "service.yaml").read_text())
    template = manifest["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "0"  # scales to zero
    assert "run.googleapis.com/cpu-throttling" not in annotations  # CPU only per request
    [container] = template["spec"]["containers"]
    assert container["command"][:2] == ["uvicorn", "shop.main:app"]
    port = container["ports"][0]["containerPort"]
    assert container["command"][-2:] == ["--port", str(port)]
    env = {e["name"]: e["value"] for e in container["env"]}
    relay_env = {k: v for k, v in env.items() if k.startswith("RELAY_")}
    settings = relay.Settings.load(environ=relay_env)  # every RELAY_ variable is valid
    assert settings.push_auth == "oidc"
    # The token's audience is Pub/Sub's default, the endpoint: the same URL twice.
    assert env["SHOP_PUSH_ENDPOINT"] == settings.push_audience
    # Pub/Sub gives a push the ack deadline (60 s); the request may run that long.
    assert template["spec"]["timeoutSeconds"] > 60
