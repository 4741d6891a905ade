"""Polling MPC: the claim loop with leases and pacing (:mod:`.loop`), the requests for one import
and what they show (:mod:`.observe`), from observation to commit plan (:mod:`.plan`)."""

from bridge.polling.loop import Poller
from bridge.polling.observe import Observer
from bridge.polling.plan import Planner

__all__ = ["Observer", "Planner", "Poller"]
