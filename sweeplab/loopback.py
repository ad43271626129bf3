"""Keep a local Ray on loopback.

Ray picks the machine's network interface as a node's address and rewrites
127.0.0.1 to it, so a Ray started inside ``sweeplab run`` would listen on the
network. With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray keeps a single local
node on 127.0.0.1 (and lets no other node join it). Ray reads the variable once,
when it is first imported: set it before any ``import ray``.
"""

from __future__ import annotations

import os

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def keep_local_ray_on_loopback() -> None:
    """For a process that starts its own local Ray: call before ray is imported.
    A value the user set already is kept."""
    os.environ.setdefault(LOOPBACK_ONLY, "0")
