"""The image fetcher's checks, against a real loopback server (allowed only by policy here)."""

import http.server
import threading

import pytest

from serve_app.media.fetch import BlockedURL, FetchPolicy, fetch_image, resolve_checked
from vocabulary.errors import InvalidRequest, PayloadTooLarge


@pytest.fixture
def server():
    routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", routes
    srv.shutdown()


LOOPBACK_OK = FetchPolicy(allow_private=True, max_bytes=1000, timeout_s=5)


async def test_fetches_within_limits(server):
    base, routes = server
    routes["/a.png"] = (200, {"Content-Type": "image/png"}, b"x" * 100)
    assert await fetch_image(f"{base}/a.png", LOOPBACK_OK, param="url", budget_s=5) == b"x" * 100


async def test_size_limit_even_without_content_length(server):
    base, routes = server
    routes["/big"] = (200, {}, b"x" * 5000)
    with pytest.raises(PayloadTooLarge):
        await fetch_image(f"{base}/big", LOOPBACK_OK, param="url", budget_s=5)


async def test_every_redirect_is_checked_again(server):
    base, routes = server
    routes["/hop"] = (302, {"Location": "http://metadata.google.internal/computeMetadata/v1/"}, b"")
    with pytest.raises(BlockedURL):
        await fetch_image(f"{base}/hop", LOOPBACK_OK, param="url", budget_s=5)
    routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(InvalidRequest, match="redirects"):
        await fetch_image(f"{base}/loop", LOOPBACK_OK, param="url", budget_s=5)


async def test_a_public_name_resolving_to_a_private_address_is_blocked(monkeypatch):
    import asyncio

    async def fake_getaddrinfo(host, port, **kw):
        return [(2, 1, 6, "", ("10.1.2.3", port)), (2, 1, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(BlockedURL, match="10.1.2.3"):
        await resolve_checked("images.example.com", 80, FetchPolicy(), "url")


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254",
                                "100.64.0.1", "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1"])
async def test_non_public_literals_are_blocked(ip):
    with pytest.raises(BlockedURL):
        await resolve_checked(ip, 80, FetchPolicy(), "url")


@pytest.mark.parametrize("ip", [
    "2002:7f00:1::", "2002:a00:1::1", "2002:808:808::1",  # 6to4: 127.0.0.1, 10.0.0.1, even a public IPv4
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::a00:1",  # NAT64, well-known and local-use prefixes
    "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::7f00:1", "fec0::1", "[fec0::1]", "fc00::1", "ff02::1", "::", "2001:db8::1"])
async def test_ipv6_that_wraps_or_translates_an_ipv4_or_is_not_public_is_blocked(ip):
    with pytest.raises(BlockedURL):
        await resolve_checked(ip, 80, FetchPolicy(), "url")


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "017700000001", "127.1", "0177.0.0.1", "0x7f.1",
                                  "0", "10.1", "0xa000001"])
async def test_every_ipv4_spelling_is_checked_as_the_address_it_resolves_to(host):
    """The resolver (inet_aton) reads these as 127.0.0.1, 0.0.0.0 and 10.0.0.1: what the connection would
    reach is what is checked (no DNS: a numeric host resolves locally)."""
    with pytest.raises(BlockedURL):
        await resolve_checked(host, 80, FetchPolicy(), "url")


async def test_ipv4_spellings_are_blocked_through_the_fetcher_too():
    for url in ("http://0x7f000001/a.png", "http://2130706433:8080/a.png", "http://127.1/a.png",
                "http://[2002:7f00:1::]/a.png", "http://[::ffff:7f00:1]/a.png"):
        with pytest.raises(BlockedURL):
            await fetch_image(url, FetchPolicy(), param="url", budget_s=5)


@pytest.mark.parametrize("ip", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"])
async def test_public_addresses_pass(ip):
    import ipaddress

    assert ipaddress.ip_address(await resolve_checked(ip, 80, FetchPolicy(), "url")) == ipaddress.ip_address(ip)
