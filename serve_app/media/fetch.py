"""Fetch an image URL safely: http(s) only; every address the host resolves to must be public
(no loopback, private, link-local, metadata, multicast or reserved, and no IPv6 that wraps or
translates an IPv4: 6to4, NAT64, Teredo; see NOT_PUBLIC_V6) unless config allows it; a host in any
IPv4 spelling (0x7f000001, 2130706433, 017700000001, 127.1) is checked as the address the resolver
makes of it, the one the connection would use; the
connection goes to the address that was checked (no DNS rebinding), and every redirect is checked
again; size and time are limited."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from vocabulary.errors import InvalidRequest, PayloadTooLarge

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


class BlockedURL(InvalidRequest):
    code = "url_not_allowed"


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3


# IPv6 ranges that carry (or translate to) an IPv4 address this guard cannot vouch for, or that are
# not public though Python counts them global: 6to4 (2002::/16 wraps any IPv4, 2002:7f00:1:: is
# 127.0.0.1), NAT64 (well-known and local-use prefixes), Teredo (2001::/32), IPv4-compatible
# (::/96, deprecated) and site-local (fec0::/10, deprecated but still routed inside some sites).
NOT_PUBLIC_V6 = tuple(ipaddress.ip_network(n) for n in (
    "2002::/16", "64:ff9b::/96", "64:ff9b:1::/48", "2001::/32", "::/96", "fec0::/10"))


def _public(ip: ipaddress._BaseAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif any(ip in network for network in NOT_PUBLIC_V6):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback)


async def resolve_checked(host: str, port: int, policy: FetchPolicy, param: str) -> str:
    """One address of `host` that the policy allows; BlockedURL if any address is not allowed."""
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise BlockedURL(f"fetching from {host} is not allowed", param=param)
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        addresses = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise InvalidRequest(f"cannot resolve host {host!r}", param=param, code="url_unresolvable") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise InvalidRequest(f"cannot resolve host {host!r}", param=param, code="url_unresolvable")
    if not policy.allow_private:
        for ip in addresses:
            if not _public(ip):
                raise BlockedURL(f"fetching from {host} ({ip}) is not allowed: not a public address", param=param)
    return str(addresses[0])


async def fetch_image(url: str, policy: FetchPolicy, *, param: str, budget_s: float) -> bytes:
    timeout = max(0.001, min(policy.timeout_s, budget_s))
    try:
        return await asyncio.wait_for(_fetch(url, policy, param), timeout=timeout)
    except TimeoutError:
        raise InvalidRequest(f"fetching the image took longer than {timeout:.1f}s", param=param,
                             code="url_timeout") from None


async def _fetch(url: str, policy: FetchPolicy, param: str) -> bytes:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        for _ in range(policy.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BlockedURL("only http(s) image URLs are fetched", param=param)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await resolve_checked(parts.hostname, port, policy, param)
            pinned_host = f"[{address}]" if ":" in address else address
            pinned = urlunsplit((parts.scheme, f"{pinned_host}:{port}", parts.path or "/", parts.query, ""))
            headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "image/*"}
            extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
            try:
                async with client.stream("GET", pinned, headers=headers, extensions=extensions) as resp:
                    if resp.is_redirect:
                        url = urljoin(url, resp.headers.get("location", ""))
                        continue
                    if resp.status_code >= 400:
                        raise InvalidRequest(f"the image URL answered {resp.status_code}", param=param,
                                             code="url_fetch_failed")
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                        raise PayloadTooLarge(f"the image is over {policy.max_bytes} bytes", param=param)
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > policy.max_bytes:
                            raise PayloadTooLarge(f"the image is over {policy.max_bytes} bytes", param=param)
                    return bytes(body)
            except httpx.HTTPError as exc:
                raise InvalidRequest(f"the image URL could not be fetched ({type(exc).__name__})", param=param,
                                     code="url_fetch_failed") from None
        raise InvalidRequest(f"more than {policy.max_redirects} redirects", param=param, code="url_fetch_failed")
