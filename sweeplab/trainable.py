"""The Tune trainable every study runs: one trial of a method study, in one process, or on
several Ray Train workers when its context says so (``sweeplab.distributed``).

It lives in the installed package, not a script: Tune's restore and a job submitted to a
cluster import it by module path in the workers.
"""

from __future__ import annotations

import logging

from sweeplab import distributed, engine
from sweeplab.context import TrialContext
from sweeplab.trial import CheckpointReporter, trial_tracker


def run_trial(config: dict) -> None:
    """Tune function trainable: the engine's loop for one trial config."""
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per epoch otherwise
    ctx = TrialContext.from_config(config)
    if ctx.distributed is not None:
        distributed.fit_trial(config)
        return
    context = tune.get_context()
    reporter = CheckpointReporter(tune, in_background=True)  # Tune's report: a copy to storage, the driver's turn
    try:
        engine.train(config, reporter, trial_tracker(ctx, context.get_trial_id(), context.get_trial_name()))
    except BaseException:
        reporter.drain()  # the last hand-over ends before the trial does
        raise
    reporter.settle(wait=True)  # the last epoch's report is Tune's before the trainable returns
