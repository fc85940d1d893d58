"""Recording every send at the socket: one send is one network round trip.

A pipeline or MULTI/EXEC block goes out as one send, so counting sends counts
round trips, and the packed bytes tell which commands went. The real classes
are wrapped (the bytes still go to the real server): the sync connection's send,
and for asyncio the stream writer every connection writes through (redis-py's
send and the saver's own send of a packet both end there)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis.connection


def _packet(command: Any) -> bytes:
    if isinstance(command, str):
        return command.encode()
    if isinstance(command, bytes):
        return command
    return b"".join(command)


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    sent: list[bytes] = []
    sync_send = redis.connection.Connection.send_packed_command
    async_write = asyncio.StreamWriter.writelines

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(_packet(command))
        sync_send(self, command, check_health)

    def awrite(self: asyncio.StreamWriter, data: Iterable[bytes]) -> None:
        chunks = list(data)
        sent.append(b"".join(chunks))
        async_write(self, chunks)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", send)
    monkeypatch.setattr(asyncio.StreamWriter, "writelines", awrite)
    yield sent


def commands_in(packet: bytes) -> list[str]:
    """Command names in a RESP packet (each command is an array whose first bulk
    string is its name)."""
    names = []
    lines = packet.split(b"\r\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith(b"*") and i + 2 < len(lines) and lines[i + 1].startswith(b"$"):
            names.append(lines[i + 2].decode(errors="replace").upper())
            i += 1 + 2 * int(lines[i][1:])
        else:
            i += 1
    return names
