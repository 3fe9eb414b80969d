"""TLS contexts for both transports, built once from the configuration."""

from __future__ import annotations

import ssl

from device_client.config import TlsConfig
from device_client.errors import ConfigError

__all__ = ["build_ssl_context"]


def build_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verify the server (with ``ca_file`` or the system store); present a client cert if set."""
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file is not None else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[tls]: cannot load certificates: {exc}") from exc
    return context
