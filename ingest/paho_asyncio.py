"""Drive a paho-mqtt client from an asyncio event loop instead of a network thread.

paho calls back when its socket opens, closes or has data to send; the bridge turns those
into ``add_reader``/``add_writer`` registrations, so reads, writes and every paho callback
run on the loop. ``connect()`` blocks on the TCP (and TLS) handshake and belongs in an
executor; the socket-open callback then arrives from that thread, which is why
registrations go through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["PahoLoopBridge"]

_MISC_INTERVAL_S = 1.0  # paho's keepalive and retry bookkeeping


class PahoLoopBridge:
    """Registers ``client``'s socket with ``loop``; run :meth:`housekeeping` as a task."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    async def housekeeping(self) -> None:
        """Call paho's ``loop_misc`` once a second while a socket is open (runs forever)."""
        while True:
            await asyncio.sleep(_MISC_INTERVAL_S)
            if self.client.socket() is not None:
                self.client.loop_misc()

    def drop_socket(self) -> None:
        """Unregister and close the socket of a connection attempt that failed."""
        sock = self.client.socket()
        if sock is not None:
            self._on_socket_close(self.client, None, sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _on_socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.call_soon_threadsafe(self._add_reader, sock)

    def _add_reader(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.add_reader(sock, self.client.loop_read)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)

    def _on_socket_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.call_soon_threadsafe(self._add_writer, sock)

    def _add_writer(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.add_writer(sock, self.client.loop_write)

    def _on_socket_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(sock)
