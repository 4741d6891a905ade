"""The MPC simulator: a real HTTP server answering MPC's member-import read endpoints from memory.

Used by the demo, the test suite and the benchmarks. In-process::

    running = await start(port=0, default_token="t")
    async with SimulatorControl(running.url) as control:
        await control.put_import("infinity-mall", "imp-1", bulks=[{"id": 11}])
    await running.stop()

As a process: ``bridge simulator --port 0 --demo`` (see :mod:`mpc_simulator.cli`).
"""

from mpc_simulator.control import ControlError, SimulatorControl
from mpc_simulator.scenarios import (
    SCENARIO_NAMES,
    BulkKey,
    DemoParams,
    ImportRef,
    Plan,
    RandomFlipsParams,
    RealisticParams,
    ScenarioManager,
    ScenarioStatus,
    is_valid_transition,
    next_transition,
    plan_demo,
    plan_realistic,
)
from mpc_simulator.server import RunningSimulator, create_app, start
from mpc_simulator.state import (
    BULK_STATUSES,
    DEFAULT_TOKEN,
    FAULT_KINDS,
    MAX_RETRIES,
    TERMINAL_STATUSES,
    Bulk,
    BulkPatch,
    BulkRef,
    BulkSpec,
    BulkStatus,
    Counters,
    Fault,
    FaultKind,
    FaultSpec,
    FlipEntry,
    FlipLogPage,
    Health,
    ImportDetail,
    ImportSpec,
    ImportView,
    LegacyImportView,
    RequestLogEntry,
    RequestLogPage,
    Simulator,
    SimulatorError,
)

__all__ = [
    "BULK_STATUSES",
    "DEFAULT_TOKEN",
    "FAULT_KINDS",
    "MAX_RETRIES",
    "SCENARIO_NAMES",
    "TERMINAL_STATUSES",
    "Bulk",
    "BulkKey",
    "BulkPatch",
    "BulkRef",
    "BulkSpec",
    "BulkStatus",
    "ControlError",
    "Counters",
    "DemoParams",
    "Fault",
    "FaultKind",
    "FaultSpec",
    "FlipEntry",
    "FlipLogPage",
    "Health",
    "ImportDetail",
    "ImportRef",
    "ImportSpec",
    "ImportView",
    "LegacyImportView",
    "Plan",
    "RandomFlipsParams",
    "RealisticParams",
    "RequestLogEntry",
    "RequestLogPage",
    "RunningSimulator",
    "ScenarioManager",
    "ScenarioStatus",
    "Simulator",
    "SimulatorControl",
    "SimulatorError",
    "create_app",
    "is_valid_transition",
    "next_transition",
    "plan_demo",
    "plan_realistic",
    "start",
]
