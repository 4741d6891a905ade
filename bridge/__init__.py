"""mpc-import-bridge: watches Placewise MPC member imports and announces every bulk status change."""

__version__ = "0.1.0"

__all__ = ["__version__"]
