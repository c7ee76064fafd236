"""Weight downloads from a spec someone else wrote: https only, valid hashes, bounded in time and size,
nothing kept unless the hash matches, no partial files left behind."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facesec.errors import ConfigError, WeightsError
from facesec.recognizers import weights
from facesec.recognizers.preflight import check_recognizer

PAYLOAD = b"weights" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = PAYLOAD * (50 if self.path == "/big" else 1)
        self.send_response(200)
        if self.path != "/unannounced":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body * (50 if self.path == "/unannounced" else 1))

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _parts() -> list[Path]:
    return sorted((weights.cache_root() / "weights").glob("*.part"))


def test_download_checks_hash_and_size_and_leaves_nothing(server: str) -> None:
    got = weights._download(f"{server}/ok", SHA, progress=False)
    assert got.read_bytes() == PAYLOAD and got.name == SHA
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights._download(f"{server}/ok", "0" * 64, progress=False)
    with pytest.raises(WeightsError, match="announced, more than"):
        weights._download(f"{server}/big", "1" * 64, progress=False, max_bytes=len(PAYLOAD) * 2)
    with pytest.raises(WeightsError, match="more than the .* bytes allowed; download discarded"):
        weights._download(f"{server}/unannounced", "2" * 64, progress=False, max_bytes=len(PAYLOAD) * 2)
    assert not _parts() and not (weights.cache_root() / "weights" / ("0" * 64)).exists()


def test_download_times_out_on_a_silent_server() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        with pytest.raises(WeightsError, match="timed out"):
            weights._download(f"http://127.0.0.1:{silent.getsockname()[1]}/x", "3" * 64, progress=False, timeout=0.5)
    finally:
        silent.close()
    assert not _parts()


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "iresnet18", "weights": "http://example.org/w.pth", "sha256": SHA}, "only https URLs"),
    ({"name": "iresnet18", "weights": "file:///dev/zero", "sha256": SHA}, "only https URLs"),
    ({"name": "iresnet18", "weights": "https://", "sha256": SHA}, "only https URLs with a host"),
    ({"name": "iresnet18", "weights": "https://example.org/w.pth"}, "needs a sha256"),
    ({"name": "iresnet18", "weights": "w.pth", "sha256": "../../x"}, "is not 64 hex digits"),
    ({"name": "iresnet18", "weights": "w.pth", "sha256": 123}, "is not 64 hex digits"),
])
def test_weights_fields_refused_at_preflight(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_recognizer("x.yaml: field 'target'", spec)
    with pytest.raises(WeightsError, match=message):
        weights.resolve_weights(str(spec["weights"]), None if "sha256" not in spec else str(spec["sha256"]))


def test_stale_partial_files_are_removed(server: str) -> None:
    folder = weights.cache_root() / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / "old.part"
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    (folder / SHA).unlink(missing_ok=True)
    weights._download(f"{server}/ok", SHA, progress=False)
    assert not stale.exists()
