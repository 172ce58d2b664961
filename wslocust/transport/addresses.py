"""
Source addresses: past ~28,000 connections from one host to one server.

The kernel tells TCP connections apart by (source address, source port,
server address, server port). From one source address to one server address
and port, only the source port varies, and it comes from
``net.ipv4.ip_local_port_range`` (32768-60999 by default: 28,232 ports). A
load generator that must hold more connections to one server binds each
connection to the next of several local addresses: every address brings a
full port range. On Linux all of 127.0.0.0/8 is local, so
``127.0.0.2-127.0.0.5`` needs no setup for a server on loopback; on other
networks, add the addresses to an interface first.

Each socket is bound with ``IP_BIND_ADDRESS_NO_PORT`` (Linux 4.2+): bind()
then fixes only the address and the port is chosen at connect(), for the
whole 4-tuple. Without it, bind() reserves a port for that address against
every destination, and a busy host runs out of ports sooner.

This module has no Locust import: :mod:`wslocust.transport.connection` uses
:func:`connect_from`, and :mod:`wslocust.integration.source_addresses` reads the option and
rotates with :class:`SourceAddresses`. Besides the connection layer, it is
the only module that touches sockets, and only to choose the local address.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from collections.abc import Sequence
from typing import Any

from gevent import socket as gsocket

from wslocust.exceptions import ConnectError

__all__ = [
    "IP_BIND_ADDRESS_NO_PORT",
    "MAX_SOURCE_ADDRESSES",
    "SourceAddresses",
    "check_bindable",
    "connect_from",
    "parse_source_addresses",
    "server_addresses",
]

IP_BIND_ADDRESS_NO_PORT: int = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
"""Linux's socket option (``<linux/in.h>``); Python names it only from 3.12 on some builds."""

MAX_SOURCE_ADDRESSES = 65536
"""Most addresses one list may expand to (a /16): more is a typo, such as 127.0.0.0/8."""

_SYNTAX = "use addresses, ranges (127.0.0.2-127.0.0.50) and CIDR blocks (127.0.1.0/28) separated by commas"

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_source_addresses(text: str) -> list[str]:
    """
    Expand a list of source addresses.

    The list is separated by commas; each item is one address
    (``127.0.0.2``, ``::1``), an inclusive range (``127.0.0.2-127.0.0.50``;
    for IPv4 the end may be the last number alone, ``127.0.0.2-50``), or a
    CIDR block whose host addresses are taken (``127.0.1.0/28``: .1 to .14).

    Returns:
        The addresses in order, without duplicates.

    Raises:
        ValueError: the text is not such a list, mixes IPv4 with IPv6, or
            expands to more than :data:`MAX_SOURCE_ADDRESSES`. The message
            starts with the quoted offending text: ``'127.0.0.300' is not
            an IP address; use ...``.
    """
    found: dict[str, None] = {}
    families: set[int] = set()
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"{str(text)!r} lists no address; {_SYNTAX}")
    for item in items:
        if not item:
            continue
        for address in _expand(item):
            families.add(address.version)
            found[str(address)] = None
            if len(found) > MAX_SOURCE_ADDRESSES:
                raise ValueError(
                    f"{str(text)!r} has more than {MAX_SOURCE_ADDRESSES} addresses; list fewer (each address "
                    f"brings ~28,000 connections per server address and port)"
                )
    if len(families) > 1:
        raise ValueError(f"{str(text)!r} mixes IPv4 and IPv6 addresses; use the family of the target's address")
    return list(found)


def _expand(item: str) -> list[_Address]:
    if "/" in item:
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR block; {_SYNTAX}") from None
        if network.num_addresses > MAX_SOURCE_ADDRESSES + 2:
            raise ValueError(f"{item!r} has more than {MAX_SOURCE_ADDRESSES} addresses; use a smaller block")
        hosts: list[_Address] = list(network.hosts())
        return hosts or [network.network_address]
    if "-" in item:
        first_text, _, last_text = (part.strip() for part in item.partition("-"))
        first = _address(first_text, item)
        if first.version == 4 and last_text.isdigit():
            # 127.0.0.2-50: the last number of the first address's network.
            if int(last_text) > 255:
                raise ValueError(f"{item!r} is not an address range: {last_text} is above 255; {_SYNTAX}")
            last_text = first_text.rsplit(".", 1)[0] + "." + last_text
        last = _address(last_text, item)
        if last.version != first.version or int(last) < int(first):
            raise ValueError(f"{item!r} is not an address range (the end comes before the start); {_SYNTAX}")
        if int(last) - int(first) >= MAX_SOURCE_ADDRESSES:
            raise ValueError(f"{item!r} has more than {MAX_SOURCE_ADDRESSES} addresses; use a shorter range")
        kind = type(first)
        return [kind(value) for value in range(int(first), int(last) + 1)]
    return [_address(item, item)]


def _address(text: str, item: str) -> _Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        what = "an IP address" if text == item else "an address range"
        raise ValueError(f"{item!r} is not {what}; {_SYNTAX}") from None


class SourceAddresses:
    """
    Round-robin over source addresses, one process's rotation.

    Args:
        addresses: from :func:`parse_source_addresses`.
        start: index of the first address handed out; workers pass their
            index so that they do not all begin with the same address.
    """

    __slots__ = ("_next", "addresses")

    def __init__(self, addresses: Sequence[str], start: int = 0) -> None:
        if not addresses:
            raise ValueError("no source address")
        self.addresses = tuple(addresses)
        """The addresses, in rotation order."""
        self._next = start % len(self.addresses)

    def next(self) -> tuple[str, int]:
        """The ``(address, 0)`` the next connection binds to; port 0: the kernel picks at connect time."""
        addresses = self.addresses
        index = self._next
        self._next = index + 1 if index + 1 < len(addresses) else 0
        return addresses[index], 0

    def __len__(self) -> int:
        return len(self.addresses)

    def __repr__(self) -> str:
        shown = ", ".join(self.addresses[:3]) + (", ..." if len(self.addresses) > 3 else "")
        return f"SourceAddresses([{shown}] ({len(self.addresses)}), next={self._next})"


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _bind_no_port(sock: socket.socket, source_address: tuple[str, int]) -> None:
    if source_address[1] == 0 and sys.platform.startswith("linux"):
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:  # pragma: no cover - kernels before 4.2
            pass
    sock.bind(source_address)


def check_bindable(address: str) -> OSError | None:
    """
    Whether this process can bind sockets to ``address`` (an address of this
    host); returns None if it can, else the error. Binds without taking a port.
    """
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        _bind_no_port(sock, (address, 0))
    except OSError as exc:
        return exc
    finally:
        sock.close()
    return None


def server_addresses(host: str, port: int) -> list[tuple[int, int, int, str, tuple[Any, ...]]]:
    """
    ``getaddrinfo(host, port)`` for a TCP client, without a lookup when ``host`` is an address.

    gevent resolves every name, literal addresses included, in its thread pool: at a
    thousand connects a second, each one's hand-offs to a thread and back cost more CPU than
    its upgrade, and the greenlets queued for a thread hold their stacks meanwhile.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return gsocket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if address.version == 6:
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]


def connect_to(host: str, port: int) -> socket.socket:
    """``socket.create_connection((host, port))``, each of the server's addresses in turn, looked up by :func:`server_addresses`."""
    error: OSError | None = None
    for family, kind, proto, _, address in server_addresses(host, port):
        sock: socket.socket = gsocket.socket(family, kind, proto)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error if error is not None else OSError(f"{host} has no address")


def connect_from(host: str, port: int, source_address: tuple[str, int]) -> socket.socket:
    """
    Open a TCP connection to ``host:port`` from ``source_address``.

    Only the server addresses of the source address's family are tried, in
    the resolver's order. The socket is bound with
    ``IP_BIND_ADDRESS_NO_PORT`` when the port is 0.

    Raises:
        ConnectError: ``host`` has no address of that family, the source
            address cannot be bound (not an address of this host), or no
            local port was free for that source and server (EADDRNOTAVAIL).
        OSError: as ``socket.create_connection`` (``gaierror``, refused, ...).
    """
    source = source_address[0]
    family = _family(source)
    infos = server_addresses(host, port)
    candidates = [info for info in infos if info[0] == family]
    if not candidates:
        version = "IPv6" if family == socket.AF_INET6 else "IPv4"
        raise ConnectError(
            f"{host} has no {version} address, the family of the source address {source} (--ws-source-addresses)"
        )
    error: OSError | None = None
    for info_family, kind, proto, _, address in candidates:
        sock: socket.socket = gsocket.socket(info_family, kind, proto)
        try:
            _bind_no_port(sock, source_address)
        except OSError as exc:
            sock.close()
            raise ConnectError(f"cannot bind the source address {source}: {_error_text(exc)}") from None
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConnectError(
                    f"no free local port from {source} to {host}:{port} (EADDRNOTAVAIL): "
                    f"add source addresses or widen net.ipv4.ip_local_port_range"
                ) from None
            error = exc
            continue
        return sock
    assert error is not None
    raise error


def _error_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or type(exc).__name__
    return f"{text} ({name})" if name else text
