"""Reading a request body, the same for every protocol: bounded before and after decompression."""

from __future__ import annotations

import zlib

from ..errors import InvalidArgument
from .asgi import Disconnected, Request
from .status import RequestTooLarge


class BadBody(InvalidArgument):
    """A body the server cannot read: an unknown Content-Encoding, or one that does not decompress."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gzip/deflate decompressed, refused past ``limit`` bytes either way (a
    declared Content-Length over it is refused before reading; a zip bomb stops at the limit)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadBody(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadBody(f"the {encoding} request body does not decompress: {e}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise RequestTooLarge(f"request body over the limit of {limit} bytes once decompressed")
    if not inflater.eof:  # a stream cut short: its end (and gzip's CRC) never came
        raise BadBody(f"the {encoding} request body is truncated (the stream does not end)")
    return out


__all__ = ["BadBody", "read_body"]
