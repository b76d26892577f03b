"""The tutorials open as users open them: headless JupyterLab, REST API, a kernel, the import cells.

Starts ``jupyter lab`` on 127.0.0.1 (random free port, random token), fetches every notebook
through ``/api/contents``, starts the notebook's kernel through ``/api/kernels`` and runs each
notebook's import cell over the kernel websocket. A broken kernel spec, server extension or
import fails here. Everything is shut down at the end (bounded timeouts, loopback only).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import websocket

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
START_TIMEOUT_S = 40
CELL_TIMEOUT_S = 60

pytestmark = pytest.mark.notebook


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base url, token) of a headless JupyterLab serving the checkout; stopped afterwards."""
    port, token = _free_port(), secrets.token_hex(16)
    runtime = tmp_path_factory.mktemp("jupyter_runtime")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "MPLBACKEND": "agg",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "lib"), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={ROOT}", "--ServerApp.open_browser=False",
           "--LabApp.extension_manager=readonly"]  # never asks PyPI for extensions
    if os.geteuid() == 0:  # containers / CI runners
        cmd.append("--allow-root")
    log = open(runtime / "server.log", "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{(runtime / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT_S} s:\n"
                            f"{(runtime / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        try:
            requests.post(f"{base}/api/shutdown", headers={"Authorization": f"token {token}"}, timeout=5)
        except requests.RequestException:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def _import_cells(nb: dict) -> list[str]:
    """The parameters cell (then ``quick = True``, as CI injects it) and the first code cell after
    it (each notebook's imports and set-up), as a user runs them from the top."""
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    sources = [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in code]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged, "no cell tagged 'parameters'"
    after = [s for s in sources[tagged[0] + 1:] if "import" in s]
    assert after, "no import cell after the parameters cell"
    return [sources[tagged[0]], "quick = True", after[0]]


def _execute(ws: websocket.WebSocket, code: str) -> tuple[str, list[str]]:
    """Run ``code`` on the kernel behind ``ws``; return (reply status, error tracebacks)."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    errors: list[str] = []
    deadline = time.monotonic() + CELL_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            msg = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"].get("traceback", [])) or msg["content"].get("evalue", ""))
        if msg["msg_type"] == "execute_reply":
            return msg["content"]["status"], errors
    raise AssertionError(f"no execute_reply within {CELL_TIMEOUT_S} s")


def test_notebooks_open_and_import_in_jupyterlab(server):
    base, token = server
    auth = {"Authorization": f"token {token}"}
    specs = requests.get(f"{base}/api/kernelspecs", headers=auth, timeout=10).json()
    assert NOTEBOOKS, "no notebooks found"
    cells, kernels = {}, set()
    for name in NOTEBOOKS:
        reply = requests.get(f"{base}/api/contents/notebooks/{name}", params={"content": 1}, headers=auth, timeout=10)
        assert reply.status_code == 200, f"{name}: {reply.status_code} {reply.text[:300]}"
        model = reply.json()
        assert model["type"] == "notebook" and model["format"] == "json"
        kernel = model["content"]["metadata"]["kernelspec"]["name"]
        assert kernel in specs["kernelspecs"], f"{name} asks for kernel {kernel!r}; server has {list(specs['kernelspecs'])}"
        kernels.add(kernel)
        cells[name] = _import_cells(model["content"])
    assert len(kernels) == 1, f"notebooks use different kernels: {kernels}"
    started = requests.post(f"{base}/api/kernels", json={"name": kernels.pop()}, headers=auth, timeout=30)
    assert started.status_code == 201, started.text[:300]
    kernel_id = started.json()["id"]
    ws = websocket.create_connection(f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: token {token}"], timeout=5)
    try:
        for name, sources in cells.items():
            for code in sources:
                status, errors = _execute(ws, code)
                assert status == "ok" and not errors, f"{name}: cell failed in JupyterLab's kernel:\n{code}\n{errors}"
        status, errors = _execute(ws, "raise ValueError('the check can fail')")
        assert status == "error" and "ValueError" in errors[0]
    finally:
        ws.close()
        requests.delete(f"{base}/api/kernels/{kernel_id}", headers=auth, timeout=15)
    assert requests.get(f"{base}/api/kernels", headers=auth, timeout=10).json() == []
