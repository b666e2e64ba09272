"""Interop: a pycrdt (Yrs, Python) client and a Yjs (JavaScript) client edit
the same document through the CommonPad sync server and must converge.

pycrdt uses 53-bit client ids while Yjs uses 32-bit ones, so this also checks
that large client ids survive the trip through the server into a Yjs client.

Run from the repository root:  python -m pytest -q tests/python
The server binary is $COMMONPAD_BIN, default target/debug/commonpad; the JS
peer is tests/interop/js_peer.mjs (needs `npm ci` in tests/interop).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import anyio
import pytest
from httpx_ws import aconnect_ws
from pycrdt import Doc, Provider, Text
from pycrdt.websocket.websocket import HttpxWebsocket

HERE = Path(__file__).resolve().parent
INTEROP_DIR = HERE.parent / "interop"
JS_PEER = INTEROP_DIR / "js_peer.mjs"

STARTUP_TIMEOUT_S = 20
KILL_GRACE_S = 5
TEST_TIMEOUT_S = 30
LISTENING_RE = re.compile(r"^listening on (http://127\.0\.0\.1:(\d+))$")

# Above 2**32, so it cannot be mistaken for (or truncated to) a Yjs-style id,
# and exactly representable as a JS number (< 2**53).
PY_CLIENT_ID = 2**52 + 12345


def server_binary() -> Path:
    from_env = os.environ.get("COMMONPAD_BIN")
    if from_env:
        return Path(from_env).resolve()
    return (HERE / "../../target/debug/commonpad").resolve()


class Server:
    """The server under test, spawned by us on an ephemeral 127.0.0.1 port."""

    def __init__(self) -> None:
        binary = server_binary()
        if not binary.exists():
            pytest.fail(f"server binary not found: {binary} (build it, or set COMMONPAD_BIN)")
        self.data_dir = tempfile.mkdtemp(prefix="commonpad-pytest-")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--addr", "127.0.0.1:0", "--data", self.data_dir, "--open"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Both pipes are drained by threads for the child's whole life: a full
        # pipe would block the server and look like a hang. We keep a tail of
        # the output for failure messages.
        self._log: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, False), daemon=True).start()
        try:
            self.base_url, self.port = self._wait_listening()
        except BaseException:
            self.stop()
            raise
        self.sync_url = f"ws://127.0.0.1:{self.port}/sync"

    def _drain(self, pipe, is_stdout: bool) -> None:
        for line in pipe:
            self._log.append(line)
            del self._log[:-200]
            if is_stdout:
                self._lines.put(line)

    def log(self) -> str:
        return "".join(self._log)

    def _wait_listening(self) -> tuple[str, int]:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no listening line within {STARTUP_TIMEOUT_S} s\n{self.log()}")
            try:
                line = self._lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if self.proc.poll() is not None:
                    pytest.fail(f"server exited early with {self.proc.returncode}\n{self.log()}")
                continue
            m = LISTENING_RE.match(line.strip())
            if m:
                return m.group(1), int(m.group(2))

    def stop(self) -> None:
        """SIGTERM our child (by its PID only), SIGKILL after a grace period."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def server():
    s = Server()
    try:
        yield s
    finally:
        s.stop()


async def wait_until(predicate, timeout_s: float, what) -> None:
    """Poll `predicate` until true; fail with `what()` after `timeout_s`."""
    with anyio.move_on_after(timeout_s):
        while not predicate():
            await anyio.sleep(0.02)
        return
    pytest.fail(f"timed out after {timeout_s} s waiting for: {what()}")


@pytest.mark.anyio
async def test_pycrdt_and_yjs_clients_converge(server: Server):
    node = shutil.which("node")
    assert node, "node is required for the JS peer"
    assert (INTEROP_DIR / "node_modules" / "y-websocket").exists(), "run `npm ci` in tests/interop"

    doc_name = f"py-interop-{uuid.uuid4().hex[:12]}"
    js_text = "[hello from yjs]"
    py_marker = "<py-marker>"
    py_text = f"[hello from pycrdt {py_marker}]"

    doc = Doc(client_id=PY_CLIENT_ID)
    text = doc.get("text", type=Text)
    assert doc.client_id == PY_CLIENT_ID
    assert doc.client_id > 2**32

    with anyio.fail_after(TEST_TIMEOUT_S):
        async with aconnect_ws(f"{server.sync_url}/{doc_name}") as ws:
            async with Provider(doc, HttpxWebsocket(ws, doc_name)) as provider:
                # Set when the server's sync step 2 arrives.
                with anyio.fail_after(10):
                    await provider.synced.wait()

                js_result: dict = {}

                async def run_js_peer() -> None:
                    # The JS peer appends its text once synced, then waits for
                    # our marker and prints the text it ended up with.
                    js_result["proc"] = await anyio.run_process(
                        [node, str(JS_PEER), "--url", server.sync_url, "--doc", doc_name,
                         "--insert", js_text, "--wait-for", py_marker, "--timeout", "20000"],
                        check=False,
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(run_js_peer)
                    # Concurrent with the JS peer connecting and inserting.
                    text.insert(len(text), py_text)
                    await wait_until(lambda: js_text in str(text), 20,
                                     lambda: f"JS text at the Python client; have {str(text)!r}")

                proc = js_result["proc"]
                stderr = proc.stderr.decode(errors="replace")
                assert proc.returncode == 0, f"js_peer failed ({proc.returncode}): {stderr}\n{server.log()}"
                events = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
                done = next(e for e in events if e["event"] == "done")

                # Both sides see both contributions and exactly the same text.
                assert py_text in done["text"], f"JS side lacks the Python text: {done['text']!r}"
                assert js_text in done["text"]
                await wait_until(lambda: str(text) == done["text"], 5,
                                 lambda: f"identical text: py={str(text)!r} js={done['text']!r}")
                # Both appended at the end of what they saw, so the result is
                # the two contributions side by side, each intact.
                assert str(text) in (py_text + js_text, js_text + py_text), str(text)

                # The 53-bit id reached the Yjs client intact (JS numbers are
                # exact below 2**53; a server that narrowed ids would break this).
                assert str(PY_CLIENT_ID) in done["stateVector"], done["stateVector"]
                assert done["stateVector"][str(PY_CLIENT_ID)] == len(py_text)
                assert str(done["clientID"]) in done["stateVector"]

