"""One receiving worker per host, the work shared by all: MQTT messages handed over a socket.

A plain persistent subscription (``MQTT_SHARE_GROUP`` empty, the default) is one that
Mosquitto restores after its own restart, so nothing a device publishes meanwhile is lost;
but every subscriber gets every message, so one client per host must hold it. Worker 0
holds it (:class:`ingest.mqtt.MqttConsumer`) and its :class:`Dispatcher` hands each group of
messages to another worker of the same host over a Unix socket, keeping a share of the
groups for itself (less than the others get: it also receives and hands out every message).
A worker (:class:`HandoffClient`) parses and writes what it is handed like any message of
its own (:class:`ingest.mqtt_intake.MqttIntake`) and, after the commit, says which messages
are done; worker 0 then sends their PUBACKs. Receipts are published by the worker that
committed the message, on a connection of its own.

Nothing is acknowledged to the broker before its commit, whatever dies: a worker that
dies gets its unfinished groups handed to the others (what it had committed counts as
duplicates the second time); when worker 0 dies, the broker redelivers what it had not
acknowledged to the next one and the other workers connect to it again.

Frames are a 4-byte length and a msgpack document (msgspec: compiled, no pickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import Sequence
from pathlib import Path

import msgspec

from core.backoff import Backoff
from core.lifecycle import AsyncResource, ResourceState
from ingest.mqtt import Delivery
from ingest.mqtt_intake import Ack, Receive

__all__ = ["Dispatcher", "HandoffClient"]

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
_MAX_FRAME_BYTES = 256 * 1024 * 1024  # a group is at most 256 messages of at most 256 KiB
_RECONNECT_FIRST_S = 0.1
_RECONNECT_MAX_S = 2.0
#: Worker 0 keeps a group while its own unfinished messages are fewer than this share of the
#: least-loaded other worker's. It also receives every message and hands most of them out
#: (about a third of its CPU): with 2 workers, keeping a third of the groups balances the
#: two. Keeping groups only when every other worker's window was full depended on the
#: broker: almost half of them with Mosquitto 2.0.11, which sends past the Receive Maximum,
#: and almost none with 2.0.20, which keeps to it, leaving the other worker the bottleneck.
#: Measured in docs/performance.md.
_LOCAL_SHARE = 0.5


class _Work(msgspec.Struct, array_like=True):
    """Worker 0 to a worker: a group of messages (topic, payload, response topic, correlation)."""

    group: int
    messages: list[tuple[str, bytes, str | None, bytes | None]]


class _Done(msgspec.Struct, array_like=True):
    """A worker to worker 0: these messages of the group have committed (or been refused)."""

    group: int
    indexes: list[int]


_work_encoder = msgspec.msgpack.Encoder()
_work_decoder = msgspec.msgpack.Decoder(_Work)
_done_decoder = msgspec.msgpack.Decoder(_Done)


def _frame(document: msgspec.Struct) -> bytes:
    body = _work_encoder.encode(document)
    return _LENGTH.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > _MAX_FRAME_BYTES:
        raise ValueError(f"a hand-off frame of {length} bytes")
    return await reader.readexactly(length)


class _Helper:
    """Worker 0's side of one other worker's connection: what it was handed and not finished."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.groups: dict[int, list[Delivery]] = {}
        self.messages = 0

    def hand(self, group_id: int, group: list[Delivery]) -> None:
        self.groups[group_id] = group
        self.messages += len(group)
        messages = [(d.topic, d.payload, d.response_topic, d.correlation) for d in group]
        self.writer.write(_frame(_Work(group_id, messages)))

    def finish(self, done: _Done) -> list[Delivery]:
        group = self.groups.pop(done.group, None)
        if group is None:
            return []
        self.messages -= len(group)
        return [group[i] for i in done.indexes if 0 <= i < len(group)]


class Dispatcher(AsyncResource):
    """Worker 0's share-out: groups from ``receive`` to the other workers, or kept here.

    A group goes to the least-loaded other worker that holds fewer than ``window``
    unfinished messages with it, unless worker 0's own unfinished messages are fewer than
    ``_LOCAL_SHARE`` of that worker's: then it waits in :meth:`local_receive` for worker 0's
    own intake, which acknowledges through :meth:`local_ack`. When no other worker has room
    the group is kept here too. ``path`` is None with one worker: everything is kept here.
    Closing waits up to ``drain_s`` for the other workers to finish what they were handed.
    """

    def __init__(
        self,
        receive: Receive,
        ack: Ack,
        path: Path | None,
        *,
        window: int,
        drain_s: float = 30.0,
    ) -> None:
        self._receive = receive
        self._ack = ack
        self._path = path
        self._window = window
        self._drain_s = drain_s
        self._helpers: list[_Helper] = []
        self._local: asyncio.Queue[list[Delivery]] = asyncio.Queue(maxsize=1)
        self._room = asyncio.Event()
        self._ids = itertools.count()
        self._server: asyncio.AbstractServer | None = None
        self._share_task: asyncio.Task[None] | None = None
        self._helper_tasks: set[asyncio.Task[None]] = set()
        # Messages kept here and not yet acknowledged (one whose handling failed, and which the
        # broker will send again, stays counted: worker 0 then only keeps a little less).
        self._kept = 0

    @property
    def helpers(self) -> int:
        """Other workers connected now."""
        return len(self._helpers)

    async def _open(self) -> None:
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()  # left by a worker 0 that was killed
            self._server = await asyncio.start_unix_server(self._serve_helper, self._path)
            self._path.chmod(0o600)
        self._share_task = asyncio.create_task(self._share_forever(), name="mqtt-handoff-share")

    async def _close(self) -> None:
        if self._share_task is not None:
            self._share_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._share_task
        # The other workers are stopping too: let them finish what they were handed, so
        # that its acknowledgements leave before the broker connection closes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain_s):
                while any(helper.messages for helper in self._helpers):
                    self._room.clear()
                    await self._room.wait()
        # Closing their connections ends the helpers' tasks as an end of stream would;
        # cancelling them instead makes asyncio log the cancellation as an error.
        for helper in self._helpers:
            helper.writer.close()
        await asyncio.gather(*self._helper_tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Whatever is still unfinished stays unacknowledged: the broker redelivers it.

    async def local_receive(self) -> list[Delivery]:
        """Wait for a group that worker 0 keeps for its own intake."""
        group = await self._local.get()
        self._room.set()
        return group

    def local_ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge messages that worker 0 kept (after their commit)."""
        self._kept = max(0, self._kept - len(deliveries))
        self._ack(deliveries)

    async def _share_forever(self) -> None:
        while True:
            await self._place(await self._receive())

    async def _place(self, group: list[Delivery]) -> None:
        while True:
            room = [h for h in self._helpers if h.messages + len(group) <= self._window]
            least = min(room, key=lambda h: h.messages) if room else None
            local_free = not self._local.full()
            if least is not None and (
                not local_free or self._kept >= _LOCAL_SHARE * least.messages
            ):
                least.hand(next(self._ids), group)
                return
            if local_free:
                self._kept += len(group)
                self._local.put_nowait(group)
                return
            self._room.clear()
            await self._room.wait()

    async def _serve_helper(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._helper_tasks.add(task)
        helper = _Helper(writer)
        self._helpers.append(helper)
        self._room.set()
        log.info("a worker joined the MQTT hand-off (%d now)", len(self._helpers))
        try:
            while True:
                done = _done_decoder.decode(await _read_frame(reader))
                finished = helper.finish(done)
                if finished:
                    self._ack(finished)
                self._room.set()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, msgspec.DecodeError):
            pass
        finally:
            self._helpers.remove(helper)
            self._helper_tasks.discard(task)
            self._room.set()
            writer.close()
            unfinished = list(helper.groups.values())
            if unfinished:
                log.warning(
                    "a worker left the MQTT hand-off with %d messages unfinished;"
                    " handing them to the others",
                    helper.messages,
                )
            if self.state is ResourceState.OPEN:  # closing: the broker redelivers them
                for group in unfinished:
                    await self._place(group)


class HandoffClient(AsyncResource):
    """A worker's side: groups handed by worker 0 come out of :meth:`receive`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._groups: asyncio.Queue[list[Delivery]] = asyncio.Queue()
        self._writer: asyncio.StreamWriter | None = None
        self._epoch = 0
        self._run_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Whether this worker is connected to worker 0."""
        return self._writer is not None

    async def _open(self) -> None:
        self._run_task = asyncio.create_task(self._run(), name="mqtt-handoff-client")

    async def _close(self) -> None:
        if self._run_task is not None:
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task

    async def receive(self) -> list[Delivery]:
        """Wait for the next group worker 0 hands over."""
        return await self._groups.get()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Tell worker 0 these messages are committed; dropped if it is not the same one."""
        writer = self._writer
        if writer is None:
            return
        indexes: dict[int, list[int]] = {}
        for delivery in deliveries:
            epoch, group = divmod(delivery.generation, 1 << 32)
            if epoch == self._epoch:
                indexes.setdefault(group, []).append(delivery.mid)
        for group, mids in indexes.items():
            writer.write(_frame(_Done(group, mids)))

    async def _run(self) -> None:
        backoff = Backoff(_RECONNECT_FIRST_S, _RECONNECT_MAX_S)
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self._path)
            except OSError:
                await backoff.sleep()  # worker 0 is starting or restarting
                continue
            backoff.reset()
            self._epoch += 1
            self._writer = writer
            log.info("joined worker 0's MQTT hand-off")
            try:
                await self._read(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError, msgspec.DecodeError):
                # Worker 0 stopping or restarting (the supervisor reports it if it died).
                log.info("worker 0's MQTT hand-off closed; connecting again")
            finally:
                self._writer = None
                writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        base = self._epoch << 32
        while True:
            work = _work_decoder.decode(await _read_frame(reader))
            generation = base | work.group
            self._groups.put_nowait(
                [
                    Delivery(topic, payload, index, 1, generation, response, correlation)
                    for index, (topic, payload, response, correlation) in enumerate(work.messages)
                ]
            )
