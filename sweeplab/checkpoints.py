"""What a trial's checkpoint holds, which checkpoints a trial keeps, and the best weights in one.

The engine checkpoints every epoch (``engine.train``) a mapping with ``epoch``, ``model`` (the
weights now), ``optimizer``, ``schedule``, ``precision`` (the fp16 grad scaler), ``method``
(state outside the model, e.g. SCN's relabelled targets), ``rng`` and ``best``: the best epoch
so far by the trial's metric, with its validation metrics and **its weights** (``best["state"]``).
So the latest checkpoint alone resumes a trial exactly and also holds the best epoch's weights:
``checkpoint.keep: 1`` (the default) keeps only it.

The checkpoint of a trial's last epoch keeps the weights (final and best) and drops what only a
resume needs (optimizer, schedule, random state): nothing resumes a finished trial. An epoch
that improved stores its weights once (``best["state"]`` is ``model`` then, and ``torch.save``
writes a tensor once).

Tune deletes a trial's older checkpoints the moment it registers a new one and snapshots the
experiment a moment later, so a sweep killed in between leaves a snapshot naming a checkpoint
that is gone, and Tune fails that trial when the sweep resumes. ``restore_named_checkpoints``
puts the trial's newest intact checkpoint back under that name before a resume.
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import torch

STATE_FILE = "state.pt"  # the file in each Tune checkpoint folder
RESUME_ONLY = ("optimizer", "schedule", "precision", "rng")  # what the last epoch's checkpoint leaves out
_FOLDER = re.compile(r"^checkpoint_(\d+)$")  # Tune's checkpoint folders, by index

log = logging.getLogger(__name__)


def quiet_forced_snapshot_warnings() -> None:
    """With ``num_to_keep`` Tune snapshots the experiment after every ``keep`` checkpoints of a trial
    (narrowing, not closing, the moment a snapshot names a deleted checkpoint: see
    ``restore_named_checkpoints``) and warns whenever two snapshots come within 5 s: with epochs of
    seconds, at every epoch. The snapshot is the price of deleting checkpoints; the warning asks
    nothing of the user. Called where a Tune experiment starts or resumes."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def checkpoint_retention(keep: int | None) -> dict:
    """What a trial's ``CheckpointConfig`` (Tune's and Ray Train's) keeps: its latest ``keep``
    checkpoints (None: all)."""
    if keep is not None:
        quiet_forced_snapshot_warnings()
    return {"num_to_keep": keep}


def final_checkpoint(checkpoint: dict, metrics: dict) -> dict:
    """The checkpoint of a trial's last epoch: without what only a resume would read, with the
    last epoch's ``metrics`` (its numbers): a trial restored from it reports them again (Tune's
    snapshot may predate that report)."""
    kept = {k: v for k, v in checkpoint.items() if k not in RESUME_ONLY}
    return {**kept, "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}


def keep_only_weights(checkpoint) -> int:
    """Rewrite a Tune ``Checkpoint`` (local or in an object store) without what only a resume reads:
    for a trial that ended early (stopped by the scheduler), which nothing resumes. Returns the bytes
    saved; the new file replaces the old in one rename (a kill leaves the old one whole)."""
    fs, path = checkpoint.filesystem, f"{checkpoint.path}/{STATE_FILE}"
    size, state = _read_state(fs, checkpoint.path)
    if not set(state) & set(RESUME_ONLY):
        return 0
    buffer = io.BytesIO()
    torch.save({k: v for k, v in state.items() if k not in RESUME_ONLY}, buffer)
    with fs.open_output_stream(f"{path}.part") as stream:
        stream.write(buffer.getvalue())
    fs.move(f"{path}.part", path)
    return size - buffer.getbuffer().nbytes


def keep_only_weights_of(checkpoints, threads: int = 4) -> int:
    """``keep_only_weights`` of each checkpoint, a few at a time (the work is reading and writing
    files, perhaps in an object store); returns the bytes saved. One that cannot be rewritten stays
    as it was, with a warning."""
    from concurrent.futures import ThreadPoolExecutor

    def trim(checkpoint) -> int:
        try:
            return keep_only_weights(checkpoint)
        except Exception as exc:  # noqa: BLE001 - the checkpoint stays whole
            log.warning("could not drop the optimizer state from %s: %s", checkpoint.path, exc)
            return 0

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return sum(pool.map(trim, checkpoints))


def best_weights(folder: str | Path) -> dict:
    """The best epoch's weights (a ``state_dict`` of the method's model) from a trial's checkpoint
    folder (``<run>/<method>/<trial>/checkpoint_*``)."""
    state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    best = state["best"].get("state")
    return best if best is not None else state["model"]


def _read_state(fs, folder: str) -> tuple[int, dict]:
    """(size in bytes, contents) of the state file of a checkpoint ``folder`` on the pyarrow
    filesystem ``fs`` (a local folder or an object store)."""
    with fs.open_input_stream(f"{folder}/{STATE_FILE}") as stream:
        raw = stream.readall()
    return len(raw), torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def _loads(fs, folder: str) -> bool:
    """Whether ``folder`` holds a checkpoint that loads whole (one being written when the sweep
    was killed may be cut short)."""
    try:
        _read_state(fs, folder)
        return True
    except Exception:  # noqa: BLE001 (missing, truncated or unreadable: not a checkpoint to resume from)
        return False


def newest_intact_checkpoint(fs, trial_path: str, after: int = -1) -> str | None:
    """The newest checkpoint folder of a trial (``<trial_path>/checkpoint_<index>``, index above
    ``after``) whose state loads; None when there is none."""
    from pyarrow.fs import FileSelector, FileType

    infos = fs.get_file_info(FileSelector(trial_path, allow_not_found=True))
    found = sorted(((int(m.group(1)), i.path) for i in infos if i.type == FileType.Directory
                    and (m := _FOLDER.match(i.base_name)) and int(m.group(1)) > after), reverse=True)
    return next((path for _, path in found if _loads(fs, path)), None)


def snapshot_trials(experiment: str) -> list:
    """The trials (Tune's ``Trial``) in Tune's last snapshot of ``experiment`` (a study's Tune
    folder or URI). Tune's warnings about trials with no result yet are kept quiet: before a resume
    they are expected."""
    from ray import tune

    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return tune.ExperimentAnalysis(experiment).trials
    finally:
        quiet.setLevel(level)


def restore_named_checkpoints(experiment: str) -> list[str]:
    """Before Tune resumes ``experiment`` (a study's Tune folder, local or in an object store):
    every unfinished trial whose checkpoint named by the last snapshot is gone (or empty) gets the newest
    intact checkpoint Tune registered after that snapshot copied under that name, so it resumes
    from its latest epoch (its MLflow run skips the epochs it holds already). Returns the trials
    put right; a trial with no such checkpoint is left to Tune, which fails it with its reason."""
    from pyarrow.fs import FileType, copy_files

    try:
        trials = snapshot_trials(experiment)
    except Exception as exc:  # noqa: BLE001 - Tune's restore reads the snapshot itself, and says what is wrong
        log.warning("could not read Tune's snapshot of %s to check its checkpoints: %s", experiment, exc)
        return []
    repaired = []
    for trial in trials:
        named = trial.checkpoint
        if trial.status == "TERMINATED" or named is None:
            continue
        fs, path = named.filesystem, named.path
        # its state file, not the folder: in an object store a deleted folder may stay as an empty marker
        if fs.get_file_info(f"{path}/{STATE_FILE}").type == FileType.File:
            continue
        parent, name = path.rsplit("/", 1)
        match = _FOLDER.match(name)
        newest = newest_intact_checkpoint(fs, parent, after=int(match.group(1)) if match else -1)
        if newest is None:
            continue
        fs.create_dir(path)
        copy_files(newest, path, source_filesystem=fs, destination_filesystem=fs)
        log.info("trial %s: Tune's snapshot names %s, deleted after it; resuming from %s", trial.trial_id, path, newest)
        repaired.append(trial.trial_id)
    return repaired
