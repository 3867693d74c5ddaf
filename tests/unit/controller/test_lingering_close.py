"""A refusal reaches a client that is still sending its body (the lingering close).

Closing a socket with unread input makes the kernel reset the connection, and the reset
can overtake the response. The server's protocol ends its side first and drains input for
a bounded time, so the client reads the whole refusal and then the end of the stream.
Served on 127.0.0.1 by a real uvicorn with the server's own protocol class.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gitsail.controller import server as server_module


async def refuse(_request: Request) -> Response:
    # As the webhook gate does for a declared length over the limit: no body is read.
    return PlainTextResponse("too large", status_code=413, headers={"Connection": "close"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(linger: float) -> AsyncIterator[int]:
    class Protocol(server_module._HeadDeadlineProtocol):
        pass

    Protocol.linger = linger
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/", refuse, methods=["POST"])]),
        host="127.0.0.1",
        port=port,
        http=Protocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn has no started event)
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task


async def send_while_reading(port: int) -> bytes:
    """POST a large body in pieces while reading; everything received until the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 67108864\r\n\r\n")

    async def body() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                writer.write(b"x" * 1024 * 1024)
                await writer.drain()

    sender = asyncio.create_task(body())
    received = b""
    try:
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                received += chunk
    finally:
        sender.cancel()
        writer.close()
    return received


async def send_until_refused(writer: asyncio.StreamWriter) -> None:
    async with asyncio.timeout(5):
        while True:
            writer.write(b"x" * 65536)
            await writer.drain()
            await asyncio.sleep(0.01)


async def test_a_client_still_sending_reads_the_whole_refusal() -> None:
    # Without the lingering close this fails with ConnectionResetError on every run.
    async with serving(linger=1.0) as port:
        answer = await send_while_reading(port)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert answer.endswith(b"too large")


async def test_a_client_that_never_stops_sending_is_cut_off_after_the_linger() -> None:
    async with serving(linger=0.2) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\n")
        assert (await reader.read(65536)).startswith(b"HTTP/1.1 413")
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionError):  # the server closed: the kernel resets
            await send_until_refused(writer)
        writer.close()
        assert asyncio.get_running_loop().time() - started < 2
