"""UDP sockets bound up front, shared by the SNMP trap receiver and the simulated SNMP agents."""

from __future__ import annotations

import socket


def bind_udp(host: str, port: int, role: str) -> socket.socket:
    """Bind host:port now: pysnmp's open_server_mode binds in a background future and loses errors.

    ``role`` names the listener in the error ("SNMP agent", "trap receiver"), so a port in use fails
    start() with a message that says who wanted it.
    """
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind the {role} to udp {host}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock
