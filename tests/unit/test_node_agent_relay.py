"""The node agent's TCP relay (how pods reach the tests' PostgreSQL): whatever way the server ends
a connection, the client behind the relay sees it end instead of waiting forever."""

from __future__ import annotations

import asyncio
import socket
import struct

from devcluster.agent import _relay


async def _through_relay(server_ends: str) -> bytes:
    """A server that ends the connection (`close`: FIN, `reset`: RST), a relay in front of it,
    and a client blocked in a read, as pg_dump is while it waits for a lock."""
    accepted = asyncio.Event()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)
        accepted.set()
        sock = writer.get_extra_info("socket")
        if server_ends == "reset":  # SO_LINGER 0: close sends RST, as a killed backend may
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    upstream = await asyncio.start_server(server, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]

    async def relay(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _relay(("127.0.0.1", port), r, w)

    front = await asyncio.start_server(relay, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*front.sockets[0].getsockname()[:2])
    writer.write(b"hello")
    await writer.drain()
    await asyncio.wait_for(accepted.wait(), 10)
    try:
        return await asyncio.wait_for(reader.read(100), 10)  # TimeoutError: the client hangs
    except ConnectionResetError:
        return b"reset"
    finally:
        writer.close()
        front.close()
        upstream.close()


def test_a_server_that_closes_is_seen_closing() -> None:
    assert asyncio.run(_through_relay("close")) == b""


def test_a_server_that_resets_is_seen_ending_not_left_hanging() -> None:
    assert asyncio.run(_through_relay("reset")) in (b"", b"reset")
