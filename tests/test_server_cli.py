"""`bge-integrations serve` as a process: serves on loopback, needs the key, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from bge_integrations.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_process_answers_and_stops_on_sigterm(tiny_bert: str, bert_embedder,
                                                    offline_env: dict[str, str]) -> None:
    port = _free_port()
    env = {**offline_env, "BGE_INTEGRATIONS_API_KEY": "k3y"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bge_integrations.cli", "serve", "--model", tiny_bert,
         "--port", str(port), "--device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        assert httpx.post(url + "/v1/embeddings", json={"input": "x"}).status_code == 401
        resp = httpx.post(url + "/v1/embeddings", json={"input": ["a panda", "bamboo"]},
                          headers={"authorization": "Bearer k3y"}, timeout=30)
        np.testing.assert_allclose([d["embedding"] for d in resp.json()["data"]],
                                   bert_embedder.encode_documents(["a panda", "bamboo"]),
                                   atol=1e-6)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn re-raises the signal once it has shut down cleanly
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out and "Finished server process" in out


def test_serve_reports_bad_models_in_one_line(capsys: pytest.CaptureFixture[str],
                                              tiny_bert: str) -> None:
    assert main(["serve", "--model", "./no/such/dir"]) == 1
    assert capsys.readouterr().err.strip() == (
        "bge-integrations: error: model directory './no/such/dir' does not exist.")
    assert main(["serve", "--model", tiny_bert, "--matryoshka", "other"]) == 1
    assert "--matryoshka names models that are not served" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve"])  # --model is required
    assert "--model" in capsys.readouterr().err
    assert os.environ.get("BGE_INTEGRATIONS_API_KEY") is None
