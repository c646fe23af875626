"""Weight downloads against a local HTTP server on 127.0.0.1: good file, resume, wrong checksum."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alignsam_gym.backends import weights
from alignsam_gym.backends.weights import REGISTRY, WeightFile, download, identify
from policies.cli import main

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; the first request for /flaky stops halfway."""

    flaky_served = False
    requests: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Handler.requests.append(self.headers.get("Range"))
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/flaky" and not Handler.flaky_served:
            Handler.flaky_served = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def entry(url: str, sha: str | None = None, size: int | None = len(PAYLOAD)) -> WeightFile:
    return WeightFile("test", "test.bin", url, sha or hashlib.sha256(PAYLOAD).hexdigest(), size, "test payload")


def test_good_download_is_installed(server, tmp_path):
    path = download(entry(f"{server}/good"), tmp_path, progress=False)
    assert path == tmp_path / "test.bin" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "test.bin.part").exists()
    before = len(Handler.requests)
    assert download(entry(f"{server}/good"), tmp_path, progress=False) == path  # verified copy: no request
    assert len(Handler.requests) == before


def test_truncated_download_resumes(server, tmp_path):
    with pytest.raises(ConnectionError, match="run the same command again to resume"):
        download(entry(f"{server}/flaky"), tmp_path, progress=False)
    part = tmp_path / "test.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD) and not (tmp_path / "test.bin").exists()
    Handler.requests.clear()
    path = download(entry(f"{server}/flaky"), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert Handler.requests == [f"bytes={len(PAYLOAD) // 2}-"]  # only the rest was fetched


def test_wrong_checksum_is_not_installed(server, tmp_path):
    with pytest.raises(ValueError, match="expected 0{64}.*it was not installed"):
        download(entry(f"{server}/good", sha="0" * 64), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_says_what_to_fetch(tmp_path):
    with pytest.raises(ConnectionError, match=r"put the file at .*test\.bin \(SHA-256"):
        download(entry("http://127.0.0.1:9/none"), tmp_path, progress=False, timeout=5)


def test_registry_entries_are_complete():
    for w in REGISTRY.values():
        assert len(w.sha256) == 64 and w.url.startswith("https://") and w.filename
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h", "clip_vit_b_16_openai"} <= set(REGISTRY)
    assert REGISTRY["sam_vit_b"].size == 375042383
    with pytest.raises(ValueError, match="unknown weight file 'sam_vit_x'"):
        weights.get_weight("sam_vit_x")


def test_verify_names_the_model(tiny_sam_checkpoint, tmp_path, capsys):
    report = identify(tiny_sam_checkpoint)
    assert report["sam_model_type"] == "custom(embed_dim=32, depth=2)" and report["registry"] is None
    assert main(["weights", "verify", str(tiny_sam_checkpoint)]) == 0
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert main(["weights", "verify", str(other)]) == 1
    assert "cannot be read as a PyTorch checkpoint" in capsys.readouterr().out
    assert identify(other)["sam_model_type"] is None


def test_weights_list(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNSAM_WEIGHTS", str(tmp_path))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "sam_vit_b_01ec64.pth" in out and REGISTRY["sam_vit_h"].sha256 in out
