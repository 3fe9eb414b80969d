"""Virtual device fleets, fault injection and load tests for the platform."""

__version__ = "0.1.0"

from simulator.accounting import Ledger, Reconciliation
from simulator.errors import (
    ApiError,
    ConfigError,
    DriverError,
    RefusedError,
    RetryLaterError,
    SimulatorError,
)
from simulator.faults import FaultConfig
from simulator.fleet import DeviceRecord, Fleet
from simulator.load import run_load
from simulator.profiles import PROFILES, Profile
from simulator.report import Report
from simulator.runner import Endpoints, RunConfig, run_fleet

__all__ = [
    "PROFILES",
    "ApiError",
    "ConfigError",
    "DeviceRecord",
    "DriverError",
    "Endpoints",
    "FaultConfig",
    "Fleet",
    "Ledger",
    "Profile",
    "Reconciliation",
    "RefusedError",
    "Report",
    "RetryLaterError",
    "RunConfig",
    "SimulatorError",
    "__version__",
    "run_fleet",
    "run_load",
]
