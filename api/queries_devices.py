"""Statements that change devices and gateways, and their history; every value is bound."""

from __future__ import annotations

__all__ = [
    "ATTACH",
    "CHANGES",
    "CHILDREN",
    "DETACH",
    "HAS_CHILDREN",
    "INSERT_CHANGE",
    "LOCK_DEVICE",
    "LOCK_DEVICES",
    "UPDATE_DEVICE",
]

LOCK_DEVICE = """
SELECT device_key, name, metadata, expected_interval_s, gateway,
       (SELECT g.device_id FROM devices g WHERE g.device_key = d.gateway_key)
FROM devices d WHERE device_id = %s
FOR UPDATE
"""
# Key order is lock order: two requests that lock the same pair cannot deadlock.
LOCK_DEVICES = """
SELECT device_key, device_id, gateway, gateway_key FROM devices
WHERE device_id = ANY(%s)
ORDER BY device_key
FOR UPDATE
"""
HAS_CHILDREN = "SELECT EXISTS (SELECT 1 FROM devices WHERE gateway_key = %s)"
UPDATE_DEVICE = """
UPDATE devices SET name = %s, metadata = %s::jsonb, expected_interval_s = %s, gateway = %s
WHERE device_key = %s
"""
INSERT_CHANGE = """
INSERT INTO device_changes (device_key, key_id, change) VALUES (%s, %s, %s::jsonb)
"""
CHANGES = """
SELECT id, changed_at, key_id, change FROM device_changes
WHERE device_key = %(device_key)s AND id < %(before)s
ORDER BY id DESC
LIMIT %(limit)s
"""
CHILDREN = """
SELECT c.device_id FROM devices c
WHERE c.gateway_key = %s
ORDER BY c.device_id
"""
ATTACH = "UPDATE devices SET gateway_key = %s WHERE device_key = %s"
DETACH = "UPDATE devices SET gateway_key = NULL WHERE device_key = %s AND gateway_key = %s"
