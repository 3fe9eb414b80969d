"""Fixtures of the security tests: a throwaway CA with its certificates, a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.conftest import _Templates
from tests.support.db import DatabaseServer


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA, a server certificate for 127.0.0.1 and localhost, a client's."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A CA nobody configured: what an impostor's certificates chain to.
    other_ca_file: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates minted for this session by a CA that exists nowhere else."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("sec-device-1.devices.example")
    pki = Pki(
        *(directory / name for name in ("ca.pem", "server.pem", "server.key")),
        *(directory / name for name in ("client.pem", "client.key", "other-ca.pem")),
    )
    ca.cert_pem.write_to_path(str(pki.ca_file))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    trustme.CA().cert_pem.write_to_path(str(pki.other_ca_file))
    return pki


@pytest.fixture
def plain_db_url(pg_server: DatabaseServer, migrated_templates: _Templates) -> Iterator[str]:
    """A fresh migrated database on the plain PostgreSQL path (storage is not under test)."""
    name = pg_server.create_database(template=migrated_templates.get("plain"))
    yield pg_server.url_for(name)
    pg_server.drop_database(name)
