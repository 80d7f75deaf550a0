"""``python -m simulator``: the same command as ``cancelq simulator``."""

from simulator.cli import simulator_command

if __name__ == "__main__":
    simulator_command(prog_name="python -m simulator")
