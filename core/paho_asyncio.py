"""Drive a paho-mqtt client from an asyncio event loop instead of a network thread.

paho calls back when its socket opens, closes or has data to send; the bridge turns those
into ``add_reader``/``add_writer`` registrations, so reads, writes and every paho callback
run on the loop. ``connect()`` blocks on the TCP (and TLS) handshake and belongs in an
executor; the callbacks of that thread are passed to the loop with
``call_soon_threadsafe``, and checked again when they run there: by then paho may have
written what it had (and said so) or closed the socket, and a writer registered for nothing
would make the loop call ``loop_write`` without end.

A consumer whose buffer is full calls :meth:`PahoLoopBridge.pause_reading`: the socket is
left unread, TCP's window closes and the broker stops sending, instead of a buffer growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["PahoLoopBridge"]

_MISC_INTERVAL_S = 1.0  # paho's keepalive and retry bookkeeping


class PahoLoopBridge:
    """Registers ``client``'s socket with ``loop``; run :meth:`housekeeping` as a task."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self._sock: socket.socket | None = None
        self._paused = False
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

    def pause_reading(self) -> None:
        """Stop reading the socket until :meth:`resume_reading` (backpressure)."""
        if not self._paused:
            self._paused = True
            if self._sock is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        """Read the socket again after :meth:`pause_reading`."""
        if self._paused:
            self._paused = False
            if self._sock is not None:
                self._add_reader(self._sock)

    def read(self) -> None:
        """Read what the socket has (called when it is readable); subclasses read more."""
        self.client.loop_read()

    def write(self) -> None:
        """Write what paho has queued (called when the socket is writable)."""
        self.client.loop_write()

    def _on_socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.call_soon_threadsafe(self._opened, sock)

    def _opened(self, sock: socket.socket) -> None:
        if sock is not self.client.socket():
            return  # closed again before this ran
        self._sock = sock
        if not self._paused:
            self._add_reader(sock)

    def _add_reader(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.add_reader(sock, self.read)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        if sock is self._sock:
            self._sock = None
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)

    def _on_socket_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            self._add_writer(sock)
        else:
            self.loop.call_soon_threadsafe(self._add_writer, sock)

    def _add_writer(self, sock: socket.socket) -> None:
        if sock is not self.client.socket() or not self.client.want_write():
            return  # written or closed meanwhile: paho will not unregister it again
        with contextlib.suppress(ValueError, OSError):
            self.loop.add_writer(sock, self.write)

    def _on_socket_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(sock)
