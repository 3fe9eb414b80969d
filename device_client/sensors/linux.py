"""Host sensors for a Raspberry Pi or any Linux machine, read from /sys and /proc.

=================  ==========================================  ===========================
type               metrics (``name`` defaults to the type)      options
=================  ==========================================  ===========================
cpu_temperature    ``{name}`` in °C                             ``zone`` (0) or ``path``
cpu                ``{name}_used_pct`` since the last sample    ``path`` (/proc/stat)
load               ``{name}_1m``, ``{name}_5m``, ``{name}_15m``
memory             ``{name}_used_pct``, ``{name}_available_bytes``  ``path`` (/proc/meminfo)
disk               ``{name}_used_pct``, ``{name}_free_bytes``   ``mount`` (/)
network            ``{name}_rx_bytes``, ``{name}_tx_bytes``     ``interface`` (all but lo),
                   (counters since boot)                        ``path`` (/proc/net/dev)
=================  ==========================================  ===========================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from device_client.config import SensorSpec
from device_client.errors import SensorError
from device_client.sensors.base import Sensor, register

__all__ = [
    "CpuTemperatureSensor",
    "CpuUsageSensor",
    "DiskSensor",
    "LoadSensor",
    "MemorySensor",
    "NetworkSensor",
]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise SensorError(f"cannot read {path}: {exc.strerror or exc}") from exc


@register("cpu_temperature")
class CpuTemperatureSensor(Sensor):
    """SoC temperature from the kernel's thermal zone (millidegrees Celsius)."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("zone", "path")
        zone = self.option("zone", int, 0)
        default = f"/sys/class/thermal/thermal_zone{zone}/temp"
        self.path = Path(self.option("path", str, default))

    def read(self) -> Mapping[str, float]:
        """Read the zone's temperature in °C."""
        text = _read(self.path).strip()
        try:
            return {self.name: int(text) / 1000.0}
        except ValueError:
            raise SensorError(f"{self.path}: not a temperature: {text[:40]!r}") from None


@register("cpu")
class CpuUsageSensor(Sensor):
    """Share of CPU time not idle between two samples, from the ``cpu`` line of /proc/stat."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("path")
        self.path = Path(self.option("path", str, "/proc/stat"))
        self.metric_name = self.metric("used_pct")
        self._last: tuple[int, int] | None = None

    def _times(self) -> tuple[int, int]:
        first = _read(self.path).splitlines()[0].split()
        if not first or first[0] != "cpu":
            raise SensorError(f"{self.path}: no aggregate cpu line")
        ticks = [int(x) for x in first[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        return sum(ticks), idle

    def read(self) -> Mapping[str, float]:
        """Return the busy share since the previous read (nothing on the first read)."""
        total, idle = self._times()
        last, self._last = self._last, (total, idle)
        if last is None or total <= last[0]:
            return {}
        busy = (total - last[0]) - (idle - last[1])
        return {self.metric_name: 100.0 * busy / (total - last[0])}


@register("load")
class LoadSensor(Sensor):
    """The 1, 5 and 15 minute load averages."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options()
        self.names = (self.metric("1m"), self.metric("5m"), self.metric("15m"))

    def read(self) -> Mapping[str, float]:
        """Return the load averages."""
        try:
            loads = os.getloadavg()
        except OSError as exc:
            raise SensorError(f"load average unavailable: {exc}") from exc
        return dict(zip(self.names, loads))


@register("memory")
class MemorySensor(Sensor):
    """Memory in use (of MemTotal, by MemAvailable) and bytes available."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("path")
        self.path = Path(self.option("path", str, "/proc/meminfo"))
        self.used_name = self.metric("used_pct")
        self.available_name = self.metric("available_bytes")

    def read(self) -> Mapping[str, float]:
        """Parse /proc/meminfo."""
        fields: dict[str, int] = {}
        for line in _read(self.path).splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[key] = int(parts[0]) * 1024
        total, available = fields.get("MemTotal"), fields.get("MemAvailable")
        if not total or available is None:
            raise SensorError(f"{self.path}: no MemTotal/MemAvailable")
        return {
            self.used_name: 100.0 * (total - available) / total,
            self.available_name: float(available),
        }


@register("disk")
class DiskSensor(Sensor):
    """Space used and free on the file system holding ``mount``."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("mount")
        self.mount = self.option("mount", str, "/")
        self.used_name = self.metric("used_pct")
        self.free_name = self.metric("free_bytes")

    def read(self) -> Mapping[str, float]:
        """Return usage as ``df`` shows it (the reserved blocks count as used)."""
        try:
            st = os.statvfs(self.mount)
        except OSError as exc:
            raise SensorError(f"statvfs {self.mount}: {exc.strerror or exc}") from exc
        total = st.f_blocks * st.f_frsize
        if total == 0:
            raise SensorError(f"{self.mount}: file system reports no size")
        free_for_users = st.f_bavail * st.f_frsize
        used = total - st.f_bfree * st.f_frsize
        return {
            self.used_name: 100.0 * used / (used + free_for_users),
            self.free_name: float(free_for_users),
        }


@register("network")
class NetworkSensor(Sensor):
    """Bytes received and sent since boot, for one interface or all but loopback."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("interface", "path")
        self.interface = self.option("interface", str)
        self.path = Path(self.option("path", str, "/proc/net/dev"))
        self.rx_name = self.metric("rx_bytes")
        self.tx_name = self.metric("tx_bytes")

    def read(self) -> Mapping[str, float]:
        """Sum the counters of the selected interfaces."""
        rx = tx = 0
        found = False
        for line in _read(self.path).splitlines()[2:]:
            iface, _, rest = line.partition(":")
            iface = iface.strip()
            if (self.interface is None and iface == "lo") or (
                self.interface is not None and iface != self.interface
            ):
                continue
            cols = rest.split()
            if len(cols) < 9:
                continue
            rx += int(cols[0])
            tx += int(cols[8])
            found = True
        if not found:
            raise SensorError(f"interface {self.interface or '(any)'} not in {self.path}")
        return {self.rx_name: float(rx), self.tx_name: float(tx)}
