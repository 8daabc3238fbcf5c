"""An ARI server on loopback that behaves like Asterisk 22 (or 16 / 20) for the subset the app
uses, so tests run over real HTTP and WebSocket.

Event sequences, JSON shapes, hangup causes and error answers follow the recordings in
``shared/ari-traces``. The far end of each dialled number follows a :class:`Script`; a digest
check plays the softswitch for per-call auth objects. ``/_sim/...`` routes expose the same
controls to tests in another process.

    sim = Simulator(SimulatorConfig(accounts={"902": "secret"}))
    base_url = await sim.start()
    sim.script("87654321", Script(action="busy"))
    ...
    await sim.stop()
"""

from ari_simulator.apps import AppState
from ari_simulator.config import Script, SimulatorConfig
from ari_simulator.errors import SimulatorError
from ari_simulator.faults import Chaos
from ari_simulator.model import RequestRecord, SimBridge, SimChannel
from ari_simulator.server import Simulator, run_simulator

__all__ = [
    "AppState",
    "Chaos",
    "RequestRecord",
    "Script",
    "SimBridge",
    "SimChannel",
    "Simulator",
    "SimulatorConfig",
    "SimulatorError",
    "run_simulator",
]
