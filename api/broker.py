"""Device credentials in the MQTT broker, through Mosquitto's dynamic security plugin.

A device's broker username is its device id and its password is its device token; its
role ``device:{id}`` lets it publish to ``telemetry/{id}``, ``telemetry/{id}/...``, its
retained ``status/{id}`` (with the Last Will) and its retained report about itself,
``attributes/{id}``, and nothing else (a gateway sends its children's readings on its own
telemetry topic). The plugin's ACLs have no
``%u`` substitution in Mosquitto 2.0, hence one role per device.

Each operation is one short MQTT 5 connection as the plugin's admin: subscribe to the
response topic, publish the commands to ``$CONTROL/dynamic-security/v1`` with a
correlation id, wait for the answers. Commands of one message run in order, so
:meth:`BrokerAdmin.put_device` first deletes whatever an earlier, half-finished attempt
left and then creates the role and the client: it can be repeated safely.

Failures raise :class:`~api.errors.BrokerError` (HTTP 503): its subclasses say whether the
broker could not be reached or the plugin refused a command.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from api.errors import BrokerRefusedError, BrokerUnavailableError
from core.mqtt_url import BrokerAddress, parse_mqtt_url

__all__ = [
    "BROKER",
    "BrokerAdmin",
    "ServiceAccount",
    "device_acls",
    "device_role",
    "ingest_account",
    "simulator_account",
]

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
_KEEPALIVE_S = 30
# Answers that mean "already as wanted" when removing things.
_ABSENT = frozenset({"Client not found", "Role not found"})
_PRESENT = frozenset({"ACL with this topic already exists", "Role not found"})

Command = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A broker account of a service (ingest, simulator) with the ACLs of its role."""

    username: str
    password: str
    acls: tuple[Command, ...]

    @property
    def role(self) -> str:
        """Name of the account's role."""
        return f"service:{self.username}"

    def __repr__(self) -> str:  # never print the password
        return f"ServiceAccount({self.username!r})"


def device_role(device_id: str) -> str:
    """Name of the role holding ``device_id``'s ACLs."""
    return f"device:{device_id}"


#: Retained by the ingest: b"1" when the platform sends commit receipts.
ANNOUNCE_TOPIC = "platform/receipts"


def _read(topic: str) -> list[Command]:
    """ACLs to subscribe to ``topic`` (a pattern) and be sent what matches it."""
    return [
        {"acltype": "subscribePattern", "topic": topic, "allow": True},
        {"acltype": "publishClientReceive", "topic": topic, "allow": True},
    ]


def device_acls(device_id: str) -> list[Command]:
    """ACLs of a device: publish its own telemetry, status and attributes; read its receipts.

    Device ids cannot hold ``/``, ``+`` or ``#`` (wire format), so each topic names
    exactly one device; ``telemetry/{id}/#`` also matches ``telemetry/{id}`` itself. A
    subscription to ``receipts/#`` or another device's receipts matches no ACL: refused.
    """
    return [
        {"acltype": "publishClientSend", "topic": f"telemetry/{device_id}/#", "allow": True},
        {"acltype": "publishClientSend", "topic": f"status/{device_id}", "allow": True},
        {"acltype": "publishClientSend", "topic": f"attributes/{device_id}", "allow": True},
        *_read(f"receipts/{device_id}/#"),
        *_read(ANNOUNCE_TOPIC),
    ]


def ingest_account(username: str, password: str, share_group: str) -> ServiceAccount:
    """Describe the ingest's account: read telemetry and attributes, send receipts.

    It subscribes to ``telemetry/#`` and ``attributes/+`` (the default, one receiving worker
    per host) or, with a ``share_group``, to the same under ``$share/{share_group}/``.
    """
    prefix = f"$share/{share_group}/" if share_group else ""
    return ServiceAccount(
        username,
        password,
        (
            {"acltype": "subscribePattern", "topic": f"{prefix}telemetry/#", "allow": True},
            {"acltype": "subscribePattern", "topic": f"{prefix}attributes/+", "allow": True},
            {"acltype": "publishClientReceive", "topic": "telemetry/#", "allow": True},
            {"acltype": "publishClientReceive", "topic": "attributes/+", "allow": True},
            {"acltype": "publishClientSend", "topic": "receipts/#", "allow": True},
            {"acltype": "publishClientSend", "topic": ANNOUNCE_TOPIC, "allow": True},
        ),
    )


def simulator_account(username: str, password: str) -> ServiceAccount:
    """Describe the load generator's account: publish any device's telemetry, read receipts."""
    return ServiceAccount(
        username,
        password,
        (
            {"acltype": "publishClientSend", "topic": "telemetry/#", "allow": True},
            *_read("receipts/#"),
            *_read(ANNOUNCE_TOPIC),
        ),
    )


def _put_client(username: str, password: str, role: str, acls: Sequence[Command]) -> list[Command]:
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": role},
        {"command": "createRole", "rolename": role, "acls": list(acls)},
        {
            "command": "createClient",
            "username": username,
            "password": password,
            "roles": [{"rolename": role}],
        },
    ]


def _remove_client(username: str, role: str) -> list[Command]:
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": role},
    ]


class BrokerAdmin:
    """Changes device and service credentials in Mosquitto's dynamic security plugin."""

    def __init__(self, admin_url: str, *, timeout_s: float = 5.0) -> None:
        self.address: BrokerAddress = parse_mqtt_url(admin_url)
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"BrokerAdmin({self.address!r})"

    async def put_device(self, device_id: str, token: str) -> None:
        """Create (or replace) the broker client of ``device_id`` with ``token`` as password."""
        role = device_role(device_id)
        await self.run(_put_client(device_id, token, role, device_acls(device_id)))

    async def set_device_password(self, device_id: str, token: str) -> None:
        """Give ``device_id`` a new password (its rotated token); create it if missing.

        Changing a password disconnects the sessions that logged in with the old one.
        A device registered before provisioning was enabled has no broker client yet.
        """
        answers = await self.run(
            [{"command": "setClientPassword", "username": device_id, "password": token}],
            tolerate=frozenset({"Client not found"}),
        )
        if answers[0].get("error"):
            await self.put_device(device_id, token)

    async def grant_device(self, device_id: str) -> None:
        """Add this version's ACLs to the role of ``device_id`` (an upgrade); idempotent.

        A device registered before provisioning was enabled has no role: nothing to do.
        """
        role = device_role(device_id)
        await self.run(
            [{"command": "addRoleACL", "rolename": role, **acl} for acl in device_acls(device_id)],
            tolerate=_PRESENT,
        )

    async def remove_device(self, device_id: str) -> None:
        """Delete the broker client and role of ``device_id`` (disconnecting it), if any."""
        await self.run(_remove_client(device_id, device_role(device_id)), tolerate=_ABSENT)

    async def put_service(self, account: ServiceAccount) -> None:
        """Create (or replace) a service account with its role."""
        await self.run(_put_client(account.username, account.password, account.role, account.acls))

    async def run(
        self, commands: list[Command], *, tolerate: frozenset[str] = _ABSENT
    ) -> list[Command]:
        """Send ``commands`` in one message and return the answers, in order.

        Errors named in ``tolerate`` are returned; others raise BrokerRefusedError.
        """
        answers = await asyncio.to_thread(self._exchange, commands)
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and error not in tolerate:
                raise BrokerRefusedError(
                    f"the broker refused {command['command']}: {error}"
                    f" (is {self.address.username!r} the dynamic security admin?)"
                )
        return answers

    def _exchange(self, commands: list[Command]) -> list[Command]:
        """Run one connection: subscribe, publish, collect the correlated answers."""
        exchange = _Exchange(commands)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"api-dynsec-{exchange.correlation}",
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.on_connect = exchange.on_connect
        client.on_subscribe = exchange.on_subscribe
        client.on_message = exchange.on_message
        client.connect_timeout = self.timeout_s
        try:
            client.connect(self.address.host, self.address.port, keepalive=_KEEPALIVE_S)
        except OSError as exc:
            raise BrokerUnavailableError(
                f"cannot connect to the broker at {self.address!r}: {exc}"
            ) from exc
        client.loop_start()
        try:
            answered = exchange.done.wait(self.timeout_s)
        finally:
            client.disconnect()
            client.loop_stop()
        if exchange.failure:
            raise BrokerUnavailableError(exchange.failure[0])
        if not answered:
            raise BrokerUnavailableError(
                f"the broker at {self.address!r} did not answer within {self.timeout_s:g} s"
                " (is the dynamic security plugin loaded?)"
            )
        return [exchange.answers[i] for i in exchange.ids]


class _Exchange:
    """State of one admin connection; paho calls its methods from its network thread."""

    def __init__(self, commands: list[Command]) -> None:
        self.correlation = secrets.token_hex(8)
        self.ids = [f"{self.correlation}:{i}" for i in range(len(commands))]
        self.payload = json.dumps(
            {
                "commands": [
                    c | {"correlationData": i} for c, i in zip(commands, self.ids, strict=True)
                ]
            }
        )
        self.answers: dict[str, Command] = {}
        self.failure: list[str] = []
        self.done = threading.Event()

    def on_connect(self, c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self.failure.append(f"the broker refused the admin login: {reason}")
            self.done.set()
        else:
            c.subscribe(RESPONSE_TOPIC, qos=1)

    def on_subscribe(
        self, c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        if reasons[0].is_failure:
            self.failure.append(f"the broker refused the subscription to {RESPONSE_TOPIC}")
            self.done.set()
        else:
            c.publish(CONTROL_TOPIC, self.payload, qos=1)

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        for response in responses:
            if isinstance(response, dict) and response.get("correlationData") in self.ids:
                self.answers[response["correlationData"]] = response
        if len(self.answers) == len(self.ids):
            self.done.set()


BROKER = web.AppKey("broker", BrokerAdmin)
