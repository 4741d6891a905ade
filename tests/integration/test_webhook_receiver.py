"""Our webhook receiver stand-in as a process: READY banner, control routes, signature checks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from bridge.webhooks.signing import new_secret, secret_key, webhook_headers
from bridge_tools.processes import Process
from bridge_tools.webhook_receiver import READY_PREFIX


def test_the_receiver_process_verifies_signatures_and_answers_as_scripted(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bridge_tools.webhook_receiver", "--port", "0"]
    proc = Process(argv, tmp_path / "receiver.log").start(stdout_pipe=True)
    try:
        assert proc.popen is not None and proc.popen.stdout is not None
        banner = proc.popen.stdout.readline().decode()
        assert banner.startswith(READY_PREFIX)
        base = banner[len(READY_PREFIX) :].strip()
        secret = new_secret()
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.put("/_control/secrets/hooks/a", json={"secrets": [secret]}).status_code == 204
            script = {"replies": [{"status": 429, "retry_after": "7"}]}
            assert client.put("/_control/script/hooks/a", json=script).status_code == 204
            body = b'{"type":"webhook.test","timestamp":"x","data":{}}'
            signed = webhook_headers([secret_key(secret)], "evt_1", int(time.time()), body)
            first = client.post("/hooks/a", content=body, headers=signed)
            assert (first.status_code, first.headers["retry-after"]) == (429, "7")
            assert client.post("/hooks/a", content=body, headers=signed).status_code == 204
            forged = {**signed, "webhook-signature": "v1,AAAA"}
            assert client.post("/hooks/a", content=body, headers=forged).status_code == 204
            got = client.get("/_control/requests", params={"path": "hooks/a"}).json()
            assert [(r["verified"], r["status"], r["webhook_id"]) for r in got] == [
                (True, 429, "evt_1"),
                (True, 204, "evt_1"),
                (False, 204, "evt_1"),
            ]
            assert client.get("/_control/requests", params={"after": 2}).json()[0]["seq"] == 3
    finally:
        proc.stop()
        if proc.popen is not None and proc.popen.stdout is not None:
            proc.popen.stdout.close()
    assert "RECEIVED /hooks/a evt_1 webhook.test [verified]" in proc.output()
    assert "BAD SIGNATURE" in proc.output()
