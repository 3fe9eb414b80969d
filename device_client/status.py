"""``python -m device_client status``: what the spool says, without disturbing the agent."""

from __future__ import annotations

import json
from dataclasses import asdict

from device_client.config import AgentConfig
from device_client.spool_status import SpoolStatus, read_status

__all__ = ["format_status", "spool_status"]


def spool_status(config: AgentConfig) -> SpoolStatus:
    """Read the configured spool's status (read-only)."""
    return read_status(config.spool.path)


def format_status(config: AgentConfig, status: SpoolStatus, *, as_json: bool = False) -> str:
    """Render the status as aligned text lines, or as one JSON object."""
    target = config.target_url
    if as_json:
        doc = asdict(status)
        doc.update(transport=config.transport, target=target, config_device_id=config.device_id)
        return json.dumps(doc, sort_keys=True)
    counters = status.counters
    lines = [
        ("device", status.device_id or config.device_id),
        ("transport", f"{config.transport} → {target}"),
        ("spool", status.path),
        ("spool depth", f"{status.depth_rows} reading-sets ({status.depth_bytes} bytes)"),
        (
            "oldest unsent",
            f"{status.oldest_ts} (seq {status.oldest_seq})" if status.oldest_seq else "none",
        ),
        ("next seq", str(status.next_seq)),
        ("last send ok", status.last_send_ok_at or "never"),
        (
            "last error",
            f"{status.last_error_at}: {status.last_error}" if status.last_error else "none",
        ),
        (
            "totals",
            ", ".join(f"{key.removesuffix('_total')}={value}" for key, value in counters.items()),
        ),
    ]
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in lines)
