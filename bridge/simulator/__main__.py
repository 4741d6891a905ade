"""``python -m bridge.simulator``: the same as ``bridge simulator``."""

from bridge.simulator.cli import simulator_command

simulator_command(prog_name="bridge simulator")
