"""Slow clients against real server processes: they are cut off, everyone else is served.

One client stops halfway through its body, another halfway through its headers. The body
staller gets a 408 after ``HTTP_READ_TIMEOUT_S`` (``API_READ_TIMEOUT_S``), the header
staller has its connection closed; meanwhile a well-behaved client gets its answers.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.security.servers import register, request
from tests.support.processes import ServiceProcess

ADMIN_KEY = "ak_slow-client-admin-key-0123456789abcdefghijklm"
GUARD_S = 60  # only a hang guard: the servers cut off after 1 s


def stall_in_body(port: int, path: str, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD_S)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"values": {'
    )
    return sock


def stall_in_headers(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD_S)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Le".encode())
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """The head and body of one response (the server may linger before it closes)."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        ).split(b":")[1]
    )
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head, body


def check_cut_off(body_staller: socket.socket, header_staller: socket.socket) -> None:
    with body_staller:
        head, body = read_answer(body_staller)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert json.loads(body)["error"] == "timeout"
    with header_staller:
        assert read_all(header_staller) == b""  # closed without an answer


def test_ingest_cuts_off_slow_clients_and_keeps_serving(plain_db_url: str, tmp_path: Path) -> None:
    token = register(plain_db_url, "slow-1")
    env = {"DATABASE_URL": plain_db_url, "MQTT_URL": "none", "HTTP_READ_TIMEOUT_S": "1"}
    with ServiceProcess("ingest", env, tmp_path / "ingest.log") as ingest:
        body_staller = stall_in_body(ingest.port, "/v1/telemetry", token)
        header_staller = stall_in_headers(ingest.port, "/v1/telemetry")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for seq in range(5):
            item = json.dumps({"seq": seq, "values": {"t": seq}}).encode()
            status, answer = request(ingest.url, "POST", "/v1/telemetry", item, headers)
            assert (status, answer["accepted"]) == (200, 1)
        check_cut_off(body_staller, header_staller)
        status, _ = request(ingest.url, "GET", "/healthz")
        assert status == 200


def test_api_cuts_off_slow_clients_and_keeps_serving(plain_db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": plain_db_url, "API_ADMIN_KEY": ADMIN_KEY, "API_READ_TIMEOUT_S": "1"}
    with ServiceProcess("api", env, tmp_path / "api.log") as api:
        body_staller = stall_in_body(api.port, "/v1/devices", ADMIN_KEY)
        header_staller = stall_in_headers(api.port, "/v1/devices")
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for i in range(5):
            body = json.dumps({"device_id": f"fast-{i}"}).encode()
            status, answer = request(api.url, "POST", "/v1/devices", body, admin)
            assert (status, answer["device_id"]) == (201, f"fast-{i}")
        check_cut_off(body_staller, header_staller)
        status, _ = request(api.url, "GET", "/v1/devices", headers=admin)
        assert status == 200
