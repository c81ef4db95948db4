"""metre CLI security: no open API off loopback without --insecure; the CLI sends its token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from metre.cli import main


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []  # noqa: RUF012 - shared by the test's one server

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = b'{"repos": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str | None]]]:
    _Recorder.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", _Recorder.seen
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_up_refuses_an_open_api_off_loopback(
    host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("METRE_API_TOKENS", raising=False)
    assert main(["up", "--host", host, "--data-dir", str(tmp_path / "d")]) == 2
    assert "METRE_API_TOKENS" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_status_sends_the_configured_token(
    recorder: tuple[str, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = recorder
    monkeypatch.delenv("METRE_API_TOKEN", raising=False)
    assert main(["status", "--api", url, "--json"]) == 0
    monkeypatch.setenv("METRE_API_TOKEN", "cli-token-123")
    assert main(["status", "--api", url, "--json"]) == 0
    assert seen == [None, "Bearer cli-token-123"]
