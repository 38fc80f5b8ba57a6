"""Fixtures for the Klaviyo-SDK compatibility tests.

Target server:
  * OUTFLOW_TEST_URL set   -> use that server; OUTFLOW_TEST_API_KEY must hold a private key (pk_...).
  * OUTFLOW_TEST_URL unset -> start `$OUTFLOW_BIN serve` (default: target/debug/outflow at the repo
    root) on a free loopback port with a fresh SQLite database in a temp dir and
    OUTFLOW_BOOTSTRAP_API_KEY and OUTFLOW_WEBHOOKS_ALLOW_PRIVATE=127.0.0.1 set, wait for GET /outflow/v1/health == 200, stop it at the end.

A missing binary or a server that does not come up is a test *error*, never a skip.

The bootstrap owner enrols TOTP multi-factor authentication once per session (`owner_mfa`), as a
real client would: only a user with MFA may add or change webhook actions (the webhook gate).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import struct
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from klaviyo_api import KlaviyoAPI

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_PATH = "/outflow/v1/health"
STARTUP_TIMEOUT_S = float(os.environ.get("OUTFLOW_TEST_STARTUP_TIMEOUT", "60"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen | None, log_path: Path | None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_err = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log = log_path.read_text(errors="replace") if log_path else ""
            raise RuntimeError(f"outflow exited with code {proc.returncode} before becoming healthy:\n{log[-4000:]}")
        try:
            r = requests.get(url + HEALTH_PATH, timeout=2)
            if r.status_code == 200:
                return
            last_err = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as e:  # not listening yet
            last_err = repr(e)
        time.sleep(0.1)
    log = log_path.read_text(errors="replace")[-4000:] if log_path else ""
    raise RuntimeError(f"{url}{HEALTH_PATH} not healthy after {STARTUP_TIMEOUT_S}s ({last_err})\n{log}")


@pytest.fixture(scope="session")
def outflow_server():
    """Yields (base_url, private_api_key)."""
    url = os.environ.get("OUTFLOW_TEST_URL")
    if url:
        key = os.environ.get("OUTFLOW_TEST_API_KEY")
        if not key:
            pytest.fail("OUTFLOW_TEST_URL is set but OUTFLOW_TEST_API_KEY is not")
        url = url.rstrip("/")
        _wait_healthy(url, None, None)
        yield url, key
        return

    bin_path = Path(os.environ.get("OUTFLOW_BIN", REPO_ROOT / "target" / "debug" / "outflow"))
    if not bin_path.is_absolute():
        bin_path = REPO_ROOT / bin_path
    if not bin_path.exists():
        pytest.fail(f"outflow binary not found at {bin_path} (build it with `cargo build`, or set OUTFLOW_BIN / OUTFLOW_TEST_URL)")

    key = "pk_test_" + secrets.token_hex(16)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="outflow-client-test-") as tmp:
        tmp_path = Path(tmp)
        log_path = tmp_path / "server.log"
        env = dict(os.environ)
        env.update(
            OUTFLOW_BOOTSTRAP_API_KEY=key,
            # Flow webhooks may reach the tests' local receivers over plain http.
            OUTFLOW_WEBHOOKS_ALLOW_PRIVATE="127.0.0.1",
            RUST_LOG=os.environ.get("RUST_LOG", "info"),
        )
        # Do not let a caller's environment redirect the server elsewhere.
        env.pop("OUTFLOW_LISTEN", None)
        env.pop("OUTFLOW_DATABASE_URL", None)
        cmd = [
            str(bin_path), "serve",
            "--listen", f"127.0.0.1:{port}",
            "--database", f"sqlite://{tmp_path / 'outflow.db'}",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=tmp, start_new_session=True)
        try:
            _wait_healthy(url, proc, log_path)
            yield url, key
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            if os.environ.get("OUTFLOW_TEST_SHOW_LOG"):
                print(log_path.read_text(errors="replace"))


@pytest.fixture(scope="session")
def base_url(outflow_server):
    return outflow_server[0]


@pytest.fixture(scope="session")
def api_key(outflow_server):
    return outflow_server[1]


def totp(secret_b32: str, at: float | None = None) -> str:
    """RFC 6238 TOTP (SHA-1, 6 digits, 30 s), with the standard library only."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8), casefold=True)
    step = int(time.time() if at is None else at) // 30
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


@pytest.fixture(scope="session")
def owner_mfa(outflow_server):
    """Enrols MFA for the key's user (POST /outflow/v1/me/mfa, then /confirm with a computed code).
    Already enrolled (409, a long-lived OUTFLOW_TEST_URL server) is fine."""
    url, key = outflow_server
    headers = {"Authorization": f"Klaviyo-API-Key {key}"}
    r = requests.post(url + "/outflow/v1/me/mfa", headers=headers, timeout=10)
    if r.status_code == 409:
        return
    assert r.status_code == 200, r.text
    secret = r.json()["data"]["secret"]
    r = requests.post(url + "/outflow/v1/me/mfa/confirm", headers=headers, json={"code": totp(secret)},
                      timeout=10)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="session")
def klaviyo(outflow_server, owner_mfa):
    """The official SDK, unmodified: only its documented `test_host` constructor argument is used."""
    url, key = outflow_server
    return KlaviyoAPI(key, max_delay=2, max_retries=3, test_host=url)


@pytest.fixture
def unique():
    """A short random token so tests never collide, even against a long-lived server."""
    return uuid.uuid4().hex[:12]
