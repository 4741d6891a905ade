"""Scenario 7: the run's known secrets must not appear in the clear anywhere they could leak."""

from __future__ import annotations

from chaos.model import Outcome, RunContext


def scan(ctx: RunContext) -> Outcome:
    outcome = Outcome("secrets")
    needles = {name: value.encode() for name, value in ctx.secrets.values().items()}
    needles.update({f"subscription_secret_{i}": s.encode() for i, s in enumerate(ctx.subscription_secrets)})
    # The raw key of a whsec_ secret, too: what follows the prefix is what a leak would show.
    needles.update(
        {
            f"subscription_secret_{i}_raw": s.removeprefix("whsec_").encode()
            for i, s in enumerate(ctx.subscription_secrets)
        }
    )
    logs = sorted(ctx.workdir.rglob("*.log"))
    places: dict[str, list[bytes]] = {
        "logs": [p.read_bytes() for p in logs],
        "API responses": ctx.responses,
        "event payloads": ctx.events,
        "Redis values": ctx.redis_values,
    }
    outcome.figures.update(
        {
            "secrets searched for": len(needles),
            "log files": len(logs),
            "log bytes": sum(len(b) for b in places["logs"]),
            "API responses": len(ctx.responses),
            "event payloads": len(ctx.events),
            "Redis values": len(ctx.redis_values),
        }
    )
    for place, blobs in places.items():
        hits = [name for name, needle in needles.items() for blob in blobs if needle in blob]
        outcome.check(f"0 secrets in {place}", not hits, f"hits: {sorted(set(hits))}" if hits else "0 hits")
    return outcome
