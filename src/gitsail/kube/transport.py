"""``Http11Transport``: the HTTP/1.1 connections under ``Kube``'s httpx client.

Why not httpx's default transport: a controller sends thousands of small requests to one
server, and each request through httpcore costs about a millisecond of CPU before it
reaches the socket — a pool that asks every kept connection whether it is still readable
(a ``getpeername`` and a ``poll`` each, through anyio's attribute layers), an h11 state
machine per event, TLS through anyio's stream wrappers. With 1000 apps that was a fifth of
the controller's CPU, and it grew with the number of kept connections. This transport
keeps the httpx API (auth flows, ``Response``, streaming, the ``transport=`` seam of the
unit tests) and replaces only what sits below it, on asyncio's own transports:

- one ``asyncio.Protocol`` per connection; bytes collect in a buffer (reading pauses above
  ``_BUFFER_LIMIT`` until the consumer drains it, so a watch or a large list never grows
  memory without bound);
- idle connections in a LIFO list per origin: a request takes the most recently used one
  whose peer has not closed it (asyncio has already told the protocol: no syscall to ask)
  and that has been idle for less than ``keepalive_expiry``; at most ``max_keepalive`` stay
  idle (each holds asyncio's 256 KiB TLS read buffer: a burst's hundred connections kept
  were a tenth of an idle controller's memory), the least recently used close first;
- responses framed by ``Content-Length``, chunked transfer coding, or the end of the
  connection; a connection goes back to the pool only after its response body was read to
  its end on a keep-alive response, otherwise it is closed;
- every size a server controls is bounded: the header block (``_HEADER_LIMIT``) and a
  chunk-size line; a malformed response is a ``RemoteProtocolError``, never a guess;
- httpx's error types (``ConnectError``/``ConnectTimeout``, ``ReadError``/``ReadTimeout``,
  ``RemoteProtocolError``, ``PoolTimeout``), so ``Kube``'s retry rules apply unchanged.

HTTP/2, proxies and ``Expect: 100-continue`` are not spoken: ``Kube`` needs none of them
(a kubeconfig's ``proxy-url`` is not supported, and httpx's environment proxies are mounted
above this transport by the client itself).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import httpx

__all__ = ["Http11Transport"]

_HEADER_LIMIT = 256 * 1024  # a response's status line and headers, in bytes
_LINE_LIMIT = 4096  # one chunk-size line (with extensions) or trailer line
_BUFFER_LIMIT = 1 << 20  # unread bytes held before the socket stops being read
_NO_BODY_STATUS = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Origin = tuple[str, str, int, str | None]


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: a byte buffer the reader waits on."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the peer ended the stream, or the connection was lost
        self.error: BaseException | None = None
        self.closed_here = False  # by this client (its close), not by the server
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _BUFFER_LIMIT and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading -------------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return (
            not self.closed
            and not self.buffer
            and transport is not None
            and not transport.is_closing()
        )

    async def wait(self, read_timeout: float | None) -> None:
        """Until more bytes arrive or the stream ends; ``ReadTimeout`` after ``read_timeout``."""
        if self.closed:
            if self.closed_here:
                raise self.ended("")
            raise httpx.ReadError(f"connection lost: {self.error or 'closed by the server'}")
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            if read_timeout is None:
                await waiter
            else:
                async with asyncio.timeout(read_timeout):
                    await waiter
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading the response") from None
        finally:
            self._waiter = None

    def take(self, limit: int | None = None) -> bytes:
        """Up to ``limit`` buffered bytes (all without a limit), removed from the buffer."""
        buffer = self.buffer
        if limit is None or limit >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:limit])
            del buffer[:limit]
        if self._paused and len(buffer) <= _BUFFER_LIMIT and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def line(self, read_timeout: float | None, limit: int = _LINE_LIMIT) -> bytes:
        """One CRLF-terminated line without its CRLF."""
        start = 0
        while True:
            end = self.buffer.find(b"\r\n", start)
            if end >= 0:
                data = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return data
            if len(self.buffer) > limit:
                raise httpx.RemoteProtocolError("a line of the response is too long")
            start = max(0, len(self.buffer) - 1)
            if self.closed:
                raise self.ended("mid-line")
            await self.wait(read_timeout)

    def ended(self, where: str) -> httpx.TransportError:
        """The error for a stream that ended ``where`` it must not."""
        if self.closed_here:
            return httpx.ReadError("the client closed the connection")
        return httpx.RemoteProtocolError(f"the server closed the connection {where}")

    def close(self) -> None:
        self.closed = True
        self.closed_here = True
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection as the consumer iterates."""

    def __init__(
        self,
        pool: Http11Transport,
        origin: Origin,
        conn: _Connection,
        *,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        read_timeout: float | None,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._conn: _Connection | None = conn
        self._length = length
        self._chunked = chunked
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise httpx.StreamClosed()
        if self._chunked:
            async for piece in self._read_chunked(conn):
                yield piece
        elif self._length is not None:
            async for piece in self._exactly(conn, self._length, "before the body's end"):
                yield piece
        else:  # delimited by the end of the connection
            while True:
                if conn.buffer:
                    yield conn.take()
                elif conn.closed:
                    if conn.closed_here:  # cut short by this client: not the body's end
                        raise conn.ended("")
                    break
                else:
                    try:
                        await conn.wait(self._timeout)
                    except httpx.ReadError:
                        break
        self._done = True
        await self.aclose()

    async def _exactly(self, conn: _Connection, size: int, where: str) -> AsyncIterator[bytes]:
        """``size`` bytes as they arrive; the stream ending first is an error (``where``)."""
        remaining = size
        while remaining:
            if not conn.buffer:
                if conn.closed:
                    raise conn.ended(where)
                await conn.wait(self._timeout)
                continue
            piece = conn.take(remaining)
            remaining -= len(piece)
            yield piece

    async def _read_chunked(self, conn: _Connection) -> AsyncIterator[bytes]:
        while True:
            size_line = await conn.line(self._timeout)
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError("a malformed chunk size") from None
            if size < 0:
                raise httpx.RemoteProtocolError("a malformed chunk size")
            if size == 0:
                # Trailers (none expected from an API server) up to the empty line.
                total = 0
                while line := await conn.line(self._timeout):
                    total += len(line)
                    if total > _HEADER_LIMIT:
                        raise httpx.RemoteProtocolError("the response's trailers are too long")
                return
            async for piece in self._exactly(conn, size, "mid-chunk"):
                yield piece
            if await conn.line(self._timeout, limit=2) != b"":
                raise httpx.RemoteProtocolError("a chunk is longer than its size")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._pool._release(self._origin, conn, reuse=self._done and self._keep_alive)


class Http11Transport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 over asyncio for one client (see the module docstring)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int = 256,
        keepalive_expiry: float = 120.0,
        max_keepalive: int = 32,
    ) -> None:
        self._ssl = ssl_context
        self._expiry = keepalive_expiry
        self._max_keepalive = max_keepalive
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    @property
    def connections(self) -> int:
        """Open connections (idle or serving a request)."""
        return len(self._open)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the client is closed")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        sni = request.extensions.get("sni_hostname")
        origin: Origin = (scheme, url.host, port, sni if isinstance(sni, str) else None)
        body = await request.aread()
        head = _request_head(request, body)

        if self._slots.locked():
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no connection became free in time") from None
        else:
            await self._slots.acquire()
        conn: _Connection | None = None
        try:
            conn = self._idle_connection(origin) or await self._connect(
                origin, timeouts.get("connect")
            )
            assert conn.transport is not None
            conn.transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                conn.transport.write(body)
            response = await self._response(request, origin, conn, timeouts.get("read"))
        except BaseException:
            if conn is not None:
                self._release(origin, conn, reuse=False)
            else:
                self._slots.release()
            raise
        return response

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < self._expiry:
                return conn
            self._drop(conn)
        return None

    async def _connect(self, origin: Origin, connect_timeout: float | None) -> _Connection:
        scheme, host, port, sni = origin
        loop = asyncio.get_running_loop()
        tls = scheme == "https"
        if tls and self._ssl is None:
            raise httpx.ConnectError("https without a TLS context")
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=(sni or host) if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from None
        self._open.add(conn)
        return conn

    async def _response(
        self, request: httpx.Request, origin: Origin, conn: _Connection, read_timeout: float | None
    ) -> httpx.Response:
        while True:
            status, reason, version, headers = await _read_head(conn, read_timeout)
            if status >= 200:
                break  # 1xx informational responses precede the real one
        connection = _header(headers, b"connection").lower()
        keep_alive = version == b"HTTP/1.1" and b"close" not in connection
        length: int | None = None
        chunked = False
        if request.method == "HEAD" or status in _NO_BODY_STATUS:
            length = 0
        elif b"chunked" in _header(headers, b"transfer-encoding").lower():
            chunked = True
        elif (text := _header(headers, b"content-length")) != b"":
            if not text.isdigit():
                raise httpx.RemoteProtocolError("a malformed Content-Length")
            length = int(text)
        else:
            keep_alive = False  # the body ends with the connection
        stream = _Body(
            self,
            origin,
            conn,
            length=length,
            chunked=chunked,
            keep_alive=keep_alive,
            read_timeout=read_timeout,
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    def _release(self, origin: Origin, conn: _Connection, *, reuse: bool) -> None:
        self._slots.release()
        if not (reuse and not self._closed and conn.reusable):
            self._drop(conn)
            return
        now = conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(origin, [])
        idle.append(conn)
        # The least recently used are at the bottom: beyond ``max_keepalive`` idle ones (a
        # burst's connections, each holding its TLS buffers) and expired or closed ones go.
        while idle and (
            len(idle) > self._max_keepalive
            or not idle[0].reusable
            or now - idle[0].idle_since >= self._expiry
        ):
            self._drop(idle.pop(0))

    def _drop(self, conn: _Connection) -> None:
        self._open.discard(conn)
        conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    """The request line and headers, framed by Content-Length (the body is in memory)."""
    url = request.url
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), url.raw_path)]
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            continue
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
            raise httpx.LocalProtocolError("a header contains CR or LF")
        lines.append(name + b": " + value)
    if body or request.method in _BODY_METHODS:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"")
    lines.append(b"")
    return b"\r\n".join(lines)


async def _read_head(
    conn: _Connection, read_timeout: float | None
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Status code, reason, HTTP version and headers of the next response."""
    start = 0
    while True:
        end = conn.buffer.find(b"\r\n\r\n", start)
        if end >= 0 and end <= _HEADER_LIMIT:
            break
        if len(conn.buffer) > _HEADER_LIMIT:
            raise httpx.RemoteProtocolError("the response's headers are too long")
        start = max(0, len(conn.buffer) - 3)
        if conn.closed:
            if conn.buffer:
                raise conn.ended("mid-headers")
            raise conn.ended("without a response")
        await conn.wait(read_timeout)
    block = bytes(conn.buffer[:end])
    del conn.buffer[: end + 4]
    status_line, *header_lines = block.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError("a malformed status line")
    headers: list[tuple[bytes, bytes]] = []
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError("a malformed header line")
        headers.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else b"", parts[0], headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key.lower() == name:
            return value
    return b""
