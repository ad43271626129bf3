"""The Ray a sweep runs on: a cluster it joins, or a Ray started inside this process and kept on
loopback; and whether that Ray can hold one trial at all."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

from sweeplab.loopback import LOOPBACK_ONLY


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False) -> Iterator[None]:
    """Connect to a Ray cluster at ``address``, or start one inside this process.

    A local Ray is kept on loopback: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    Ray does not swap 127.0.0.1 for the machine's network address, so nothing a
    local sweep starts listens on the network. Ray's token authentication stays
    as Ray configures it. ``dashboard``: start a local Ray's dashboard (on 127.0.0.1): Ray
    Train asks its state API whether a trial's Train run is gone, to free its workers' CPUs
    and GPUs when the scheduler stopped the trial.
    """
    import ray

    trial_actors_on_prestarted_workers()
    if ray.is_initialized():
        yield
        return
    from ray._private import ray_constants

    # Tune snapshots the experiment (which trials finished, the searcher) at most this often;
    # its default (>= 10 s) means a sweep killed within 10 s of a trial's end reruns that trial's
    # last epochs on resume. A snapshot of a few hundred trials takes milliseconds.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    if address is None:
        if ray_constants.ENABLE_RAY_CLUSTER:  # read once, when ray is first imported
            raise RuntimeError(
                f"a local Ray would listen on this machine's network address: set {LOOPBACK_ONLY}=0 in the "
                "environment before ray is imported (sweeplab's command line does; in your own script call "
                "sweeplab.loopback.keep_local_ray_on_loopback() before importing ray), or pass an address"
            )
        with _dashboard_env(dashboard) as port:
            ray.init(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                     dashboard_port=port, logging_level=logging.WARNING)
            try:
                yield
            finally:
                ray.shutdown()
        return
    ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def trial_actors_on_prestarted_workers() -> None:
    """Let Tune's trial actors start on the Python workers Ray prestarts (one per CPU, ray
    already imported) instead of in a new worker process each: ~1 s less before a trial starts.

    Tune gives every trial actor a runtime env holding ``PL_DISABLE_FORK=1``, a PyTorch
    Lightning work-around (ray-project/ray#28197); an actor with any runtime env cannot use a
    prestarted worker, which Ray starts without one. sweeplab's trials do not run Lightning,
    so that default goes. What Tune propagates from the driver's environment (AWS credentials,
    Ray Train's settings) still does: with one of those set an actor starts a process of its own,
    as before. Ray keeps idle workers only for the CPUs no placement group holds, so once Tune
    has reserved a trial's CPUs some prestarted workers end: the first trials of a sweep (as many
    as leave CPUs unreserved) get one; later trials reuse their actors anyway. Tune's module is
    private: if it changes, nothing is done (``tests/test_ray_session.py`` notices)."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        return
    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    if isinstance(defaults, dict):
        defaults.pop("PL_DISABLE_FORK", None)


@contextmanager
def _dashboard_env(dashboard: bool) -> Iterator[int | None]:
    """A free loopback port for a local dashboard, named in ``RAY_API_SERVER_ADDRESS`` while
    Ray runs (Ray's processes inherit it): Ray Train's state-API client otherwise looks for
    "the" local Ray and gives up when the machine runs several."""
    if not dashboard:
        yield None
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with environment("RAY_API_SERVER_ADDRESS", f"http://127.0.0.1:{port}"):
        yield port


@contextmanager
def environment(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name] = value`` inside the block (nothing when ``value`` is None), as before after it."""
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class ResourcesUnavailable(ValueError):
    """A trial asks for more than the (local) cluster has."""


def check_resources(sweep, address_given: bool) -> None:
    """A trial that asks for more than the cluster has would wait forever: say so instead.
    (On a cluster that can grow, nodes may still come: only a local Ray is checked.)"""
    import ray

    if address_given:
        return
    have = ray.cluster_resources()
    res = sweep.resources
    for key, each in (("CPU", res.cpus), ("GPU", res.gpus)):
        want = each * res.workers
        if want > have.get(key, 0):
            asks = f"{want:g} {key}(s)" if res.workers == 1 else f"{res.workers} workers x {each:g} {key}(s)"
            raise ResourcesUnavailable(
                f"{sweep.file}: resources.{key.lower()}s{'' if res.workers == 1 else '_per_worker'}: each trial "
                f"asks for {asks} but this machine's Ray has {have.get(key, 0):g}; lower it or run on a cluster "
                "(--address)"
            )
