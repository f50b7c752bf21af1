"""Names every layer shares: the leaf module of `harness.core` (it imports nothing).

`harness.core.scenario` validates `[run] guards` against GUARD_NAMES and
`harness.analysis` orders its tables by it; keeping the tuple here, below both,
is what keeps `analysis -> scenario` one-way.
"""

from __future__ import annotations

# The guards both modes implement (harness.core.guards.GUARDS is the registry of their step generators; a test keeps them equal).
GUARD_NAMES: tuple[str, ...] = ("none", "finished-check", "serialized")

__all__ = ["GUARD_NAMES"]
