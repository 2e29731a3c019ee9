"""The SSRF guard: image URLs to loopback, private, link-local or metadata addresses are refused
with 400, and nothing is fetched."""

import http.server
import threading

import httpx
import pytest

from tests.integration.conftest import free_port
from tests.integration.media import text_image

pytestmark = pytest.mark.integration


@pytest.fixture
def watched_server():
    """A real HTTP server on loopback that counts what reaches it."""
    hits = []
    image = text_image("secret")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, hits
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.parametrize("template", [
    "http://127.0.0.1:{port}/img.png",
    "http://localhost:{port}/img.png",          # a hostname that resolves to loopback
    "http://[::1]:{port}/img.png",
    "http://10.0.0.1/img.png",
    "http://192.168.1.10/img.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://0.0.0.0:{port}/img.png",
    "ftp://127.0.0.1:{port}/img.png",
    "file:///etc/passwd",
])
def test_private_and_odd_urls_are_refused_unfetched(switchboard, watched_server, template):
    port, hits = watched_server
    url = template.format(port=port)
    chat = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    r = httpx.post(f"{switchboard}/v1/chat/completions", json=chat, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "url_not_allowed" and error["param"] == "messages.0.content.0.image_url.url"
    r = httpx.post(f"{switchboard}/api/vision", data={"image_url": url}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "url_not_allowed"
    assert hits == []
