"""Dataplane drivers: `Driver` is the interface, `MemoryDriver` and `linux.LinuxDriver` implement it."""

from l2vpc.agent.drivers.base import Action, ConvergeResult, DataplaneError, Driver, Failure
from l2vpc.agent.drivers.memory import MemoryDriver

__all__ = ["Action", "ConvergeResult", "DataplaneError", "Driver", "Failure", "MemoryDriver"]
