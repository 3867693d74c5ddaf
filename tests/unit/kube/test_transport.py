"""``Http11Transport`` against a scripted HTTP/1.1 server on 127.0.0.1.

Each test's server answers requests with the raw bytes the test gives it, so framing,
reuse and every refusal are exercised on real sockets without an API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from gitsail.kube.transport import Http11Transport

Answer = Callable[[bytes], bytes | None]  # request head -> raw response (None: close)


class Server:
    """Reads one request head at a time per connection and writes the scripted answer."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.bodies.append(await reader.readexactly(length))
                self.requests.append(head)
                raw = self.answer(head)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serve(answer: Answer) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        for writer in server.writers:
            writer.close()
        listener.close()


def ok(body: bytes = b'{"kind":"Status"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@asynccontextmanager
async def client(base: str, **kwargs: float) -> AsyncIterator[httpx.AsyncClient]:
    transport = Http11Transport(ssl_context=None, **kwargs)  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=base, transport=transport) as c:
        yield c


async def test_a_content_length_body_and_the_connection_is_reused() -> None:
    async with serve(lambda _: ok()) as (server, base), client(base) as c:
        for _ in range(5):
            response = await c.get("/api/v1/namespaces")
            assert response.status_code == 200
            assert response.json() == {"kind": "Status"}
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_the_request_line_headers_and_body_reach_the_server() -> None:
    async with serve(lambda _: ok()) as (server, base), client(base) as c:
        await c.patch(
            "/apis/apps/v1/namespaces/a/deployments/b",
            params={"fieldManager": "gitsail", "force": "true"},
            content=b'{"x":1}',
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        await c.post("/api/v1/namespaces")  # a POST without a body says Content-Length: 0
    first, second = server.requests
    assert first.startswith(
        b"PATCH /apis/apps/v1/namespaces/a/deployments/b?fieldManager=gitsail&force=true "
        b"HTTP/1.1\r\n"
    )
    assert b"content-type: application/apply-patch+yaml" in first.lower()
    assert b"content-length: 7" in first.lower()
    assert server.bodies[0] == b'{"x":1}'
    assert b"content-length: 0" in second.lower()


async def test_a_chunked_body_is_reassembled_and_the_connection_kept() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n6;ext=1\r\n:[1,2]\r\n1\r\n}\r\n0\r\n\r\n'
    )
    async with serve(lambda _: raw) as (server, base), client(base) as c:
        assert (await c.get("/x")).json() == {"a": [1, 2]}
        assert (await c.get("/x")).json() == {"a": [1, 2]}
    assert server.connections == 1


async def test_a_body_delimited_by_the_close_is_read_and_the_connection_not_reused() -> None:
    def answer(_: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\n\r\nuntil the end"

    class Closing(Server):
        async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            await r.readuntil(b"\r\n\r\n")
            w.write(answer(b""))
            await w.drain()
            w.close()

    server = Closing(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        async with client(base) as c:
            assert (await c.get("/a")).text == "until the end"
            assert (await c.get("/b")).text == "until the end"
    finally:
        listener.close()
    assert server.connections == 2


async def test_connection_close_is_honoured() -> None:
    closing = ok(extra=b"Connection: close\r\n")
    async with serve(lambda _: closing) as (server, base), client(base) as c:
        await c.get("/a")
        await c.get("/b")
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async with serve(lambda _: ok()) as (server, base), client(base) as c:
        await c.get("/a")
        for writer in server.writers:
            writer.close()
        transport = c._transport
        assert isinstance(transport, Http11Transport)
        await _until(lambda: transport.connections == 0 or _all_closed(transport))
        assert (await c.get("/b")).status_code == 200
    assert server.connections == 2


def _all_closed(transport: Http11Transport) -> bool:
    return all(not conn.reusable for conns in transport._idle.values() for conn in conns)


async def test_an_idle_connection_past_its_expiry_is_replaced() -> None:
    async with serve(lambda _: ok()) as (server, base), client(base, keepalive_expiry=0) as c:
        await c.get("/a")
        await c.get("/b")
    assert server.connections == 2


async def test_a_body_left_unread_closes_its_connection() -> None:
    async with serve(lambda _: ok(b"x" * 100)) as (server, base), client(base) as c:
        async with c.stream("GET", "/a"):
            pass
        await c.get("/b")
    assert server.connections == 2


async def test_a_streamed_body_arrives_piece_by_piece() -> None:
    """A watch: chunks are delivered as they come, not when the response ends."""
    release = asyncio.Event()

    class Streaming(Server):
        async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            w.write(b"6\r\nfirst\n\r\n")
            await w.drain()
            await release.wait()
            w.write(b"7\r\nsecond\n\r\n0\r\n\r\n")
            await w.drain()
            w.close()

    server = Streaming(lambda _: None)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    lines: list[str] = []
    try:
        async with client(base) as c, c.stream("GET", "/watch") as response:
            async for line in response.aiter_lines():
                lines.append(line)
                if line == "first":
                    release.set()
    finally:
        listener.close()
    assert lines == ["first", "second"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "Content-Length"),
        (b"SPDY/3 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n", "chunk"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 300_000 + b"\r\n\r\n", "too long"),
    ],
)
async def test_a_malformed_response_is_refused(raw: bytes, message: str) -> None:
    async with serve(lambda _: raw) as (_, base), client(base) as c:
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await c.get("/a")


async def test_a_chunk_size_line_without_an_end_is_refused() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 10_000
    async with serve(lambda _: raw) as (_, base), client(base) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="too long"):
            await c.get("/a")


async def test_a_server_that_closes_without_answering_is_a_protocol_error() -> None:
    async with serve(lambda _: None) as (_, base), client(base) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="without a response"):
            await c.get("/a")


async def test_a_body_cut_short_is_an_error() -> None:
    class Short(Server):
        async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await w.drain()
            w.close()

    server = Short(lambda _: None)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        async with client(base) as c:
            with pytest.raises(httpx.RemoteProtocolError, match="body's end"):
                await c.get("/a")
    finally:
        listener.close()


async def test_a_server_that_never_answers_times_out() -> None:
    async with serve(lambda _: b"") as (_, base), client(base) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get("/a", timeout=httpx.Timeout(5.0, read=0.2))


async def test_a_refused_connection_is_a_connect_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with client(f"http://127.0.0.1:{port}") as c:
        with pytest.raises(httpx.ConnectError):
            await c.get("/a")


async def test_a_header_value_with_a_line_break_is_never_sent() -> None:
    async with serve(lambda _: ok()) as (server, base), client(base) as c:
        request = c.build_request("GET", "/a")
        request.headers._list.append((b"x-evil", b"x-evil", b"a\r\nInjected: 1"))
        with pytest.raises(httpx.LocalProtocolError):
            await c.send(request)
    assert server.requests == []


async def test_connections_are_bounded_and_a_waiting_request_times_out() -> None:
    gate = asyncio.Event()

    class Slow(Server):
        async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            await r.readuntil(b"\r\n\r\n")
            await gate.wait()
            w.write(ok())
            await w.drain()
            w.close()

    server = Slow(lambda _: None)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        async with client(base, max_connections=1) as c:
            first = asyncio.create_task(c.get("/a"))
            await _until(lambda: server.connections == 1)
            with pytest.raises(httpx.PoolTimeout):
                await c.get("/b", timeout=httpx.Timeout(5.0, pool=0.2))
            gate.set()
            assert (await first).status_code == 200
    finally:
        listener.close()
    assert server.connections == 1


async def test_a_burst_s_connections_beyond_max_keepalive_are_closed_once_idle() -> None:
    """Each kept connection holds its buffers: after a burst only ``max_keepalive`` stay."""
    gate = asyncio.Event()

    class Held(Server):
        async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            self.writers.append(w)
            try:
                while True:
                    await r.readuntil(b"\r\n\r\n")
                    await gate.wait()
                    w.write(ok())
                    await w.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

    server = Held(lambda _: None)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    transport = Http11Transport(ssl_context=None, max_keepalive=2)
    try:
        async with httpx.AsyncClient(base_url=base, transport=transport) as c:
            burst = [asyncio.create_task(c.get(f"/{i}")) for i in range(6)]
            await _until(lambda: server.connections == 6)
            gate.set()
            assert all(r.status_code == 200 for r in await asyncio.gather(*burst))
            assert transport.connections == 2
            assert (await c.get("/again")).status_code == 200
            assert server.connections == 6  # a kept one was used
    finally:
        for writer in server.writers:
            writer.close()
        listener.close()


async def test_a_closed_transport_refuses_requests() -> None:
    transport = Http11Transport(ssl_context=None)
    await transport.aclose()
    with pytest.raises(httpx.ConnectError):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:1/"))


async def _until(condition: Callable[[], bool], deadline: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_stream_closed_by_the_client_is_not_blamed_on_the_server() -> None:
    class Holding(Server):
        async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
            await w.drain()
            await asyncio.sleep(30)

    server = Holding(lambda _: None)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    transport = Http11Transport(ssl_context=None)
    try:
        async with (
            httpx.AsyncClient(base_url=base, transport=transport) as c,
            c.stream("GET", "/watch") as response,
        ):
            lines = response.aiter_lines()
            assert await anext(lines) == "first"
            await transport.aclose()
            with pytest.raises(httpx.ReadError, match="client closed"):
                await anext(lines)
    finally:
        listener.close()
