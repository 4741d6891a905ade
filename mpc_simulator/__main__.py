"""``python -m mpc_simulator``: the same as ``bridge simulator``."""

from mpc_simulator.cli import simulator_command

simulator_command(prog_name="bridge simulator")
