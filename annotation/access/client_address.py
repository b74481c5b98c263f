"""The client's address: the one helper the login throttle and the audit log both ask.

Behind the reverse proxy the deployment prescribes, REMOTE_ADDR is the proxy's address for
every client, so keying anything on it puts the whole lab behind one key. The proxy writes the
address it saw into X-Forwarded-For; but any client can send that header itself, so it is read
only when the peer (REMOTE_ADDR) is one of the proxies listed in MERSV_TRUSTED_PROXIES
(addresses or CIDRs). Then the header is walked from the right, skipping hops that are
trusted proxies too; the first untrusted hop is the client (what a client wrote to the left of
it is its own claim and ignored). With no proxies configured REMOTE_ADDR is the client.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """The proxy networks of MERSV_TRUSTED_PROXIES; a malformed entry stops the start."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"MERSV_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR "
                "(e.g. 10.0.0.5 or 172.16.0.0/12)"
            ) from None
    return tuple(networks)


def _parse(value: str) -> Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address_from(
    remote_addr: str | None, forwarded_for: str | None, proxies: Sequence[str]
) -> str | None:
    """The client's address given the peer, the X-Forwarded-For header and the proxy list."""
    peer = _parse(remote_addr or "")
    if peer is None:
        return None
    networks = trusted_networks(tuple(proxies))
    if not forwarded_for or not _trusted(peer, networks):
        return str(peer)
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _parse(hop)
        if address is None:
            break  # a hop our proxy would not write: trust nothing further left
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


def client_ip(request: HttpRequest | None) -> str | None:
    """The real client's address of a request (None without a request or a peer)."""
    if request is None:
        return None
    meta = getattr(request, "META", {})
    return client_address_from(
        meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), settings.TRUSTED_PROXIES
    )
