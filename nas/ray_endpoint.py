"""Whether an address answers as a Ray head, checked before Ray is asked to join it.

Ray's own client, pointed at a port where some other service listens (Redis also uses 6379, Ray's
default port), retries its handshake for minutes and prints only its own timeouts. A Ray head's
GCS and its Ray Client server are gRPC servers, so the HTTP/2 handshake of gRPC (a package Ray
itself depends on) tells a head from another service within seconds. It does not prove the
server is Ray; it catches the mistakes users make: a closed port, a wrong service.
"""

from __future__ import annotations

import socket

from gannas.errors import GannasError

__all__ = ["REACH_TIMEOUT_S", "RayUnreachable", "check_ray_endpoint", "endpoint_of"]

REACH_TIMEOUT_S = 5.0
"""How long the port may take to accept a connection, and then to answer the gRPC handshake,
before it counts as unreachable."""


class RayUnreachable(GannasError):
    """No Ray head answers at the address given."""


def endpoint_of(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; ``None`` for anything Ray
    resolves itself (``auto``, ``local``, an address without a port)."""
    text = address.strip().removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def check_ray_endpoint(
    host: str, port: int, *, expected: str, timeout_s: float | None = None
) -> None:
    """Raise :class:`RayUnreachable` unless a gRPC server answers at ``host:port``.

    ``expected`` ends the message: what the user should have pointed at.
    """
    import grpc

    timeout_s = REACH_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayUnreachable(
            f"cannot reach the Ray head at {host}:{port} ({exc.strerror or exc}); expected {expected}"
        ) from None
    channel = grpc.insecure_channel(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise RayUnreachable(
            f"{host}:{port} accepts connections but is not a Ray head: it did not answer the "
            f"gRPC handshake within {timeout_s:g} s (is it another service, such as Redis on "
            f"6379?); expected {expected}"
        ) from None
    finally:
        channel.close()
