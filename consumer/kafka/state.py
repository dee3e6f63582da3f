"""What a member reports to its health and readiness endpoints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServiceState:
    """What the health and readiness endpoints report. `joined`: the member has its
    assignment (false from a rebalance's revoke until the next assignment); `running`: from the
    start until a shutdown begins."""

    model_loaded: bool = False
    joined: bool = False
    running: bool = False
    failed: bool = False

    @property
    def ready(self) -> bool:
        return self.model_loaded and self.joined and self.running
