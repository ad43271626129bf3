"""Where a sweep run lives: a folder (local or a shared filesystem) or an object store.

``storage.path`` of a sweep file is either a folder or an object-store URI that
pyarrow opens (``s3://bucket/prefix``, ``gs://…``, ``abfs://…``, ``hdfs://…``;
pyarrow's query options such as ``?endpoint_override=host:port&scheme=http`` for
an S3-compatible server pass through). Tune writes trials, checkpoints and its
experiment state there itself. The driver's own files (the resolved sweep file,
``state.json``, the Optuna journal) need a POSIX file (the journal is appended to
under a lock), so with an object store the driver works in a local mirror of the
run and uploads them; ``sweeplab resume URI`` downloads them again, on any
machine. Credentials come from the environment (``AWS_ACCESS_KEY_ID``…, an
instance profile), never from the URI: a sweep file's path is logged and tagged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# schemes pyarrow.fs.FileSystem.from_uri opens as an object store or a remote filesystem
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")

RESOLVED_FILE = "sweep.yaml"  # the resolved sweep file (profile and --set applied)
STATE_FILE = "state.json"  # MLflow experiment and parent runs, which studies are complete
JOURNAL_FILE = "optuna.journal"  # the Optuna studies
SPACES_FOLDER = "search_spaces"  # copies of the studies' search spaces
# the driver's files, uploaded beside Tune's experiment folders
DRIVER_FILES = (RESOLVED_FILE, STATE_FILE, JOURNAL_FILE, SPACES_FOLDER)


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def check_storage_uri(value: str) -> str:
    """The problem with an object-store URI as a sweep's ``storage.path`` (empty when none)."""
    parts = urlsplit(value)
    if parts.scheme not in OBJECT_STORE_SCHEMES:
        return (f"{value!r}: unknown storage scheme {parts.scheme!r}; allowed: a folder, or a URI with one of "
                + ", ".join(f"{s}://" for s in OBJECT_STORE_SCHEMES))
    if "@" in parts.netloc:
        hidden = urlunsplit((parts.scheme, "…@" + parts.netloc.rsplit("@", 1)[1], parts.path, "", ""))
        return (f"{hidden}: credentials in the URI would be logged with the sweep; give them in the "
                "environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, …) "
                "or the machine's instance profile")
    if not parts.netloc:
        return f"{value!r}: no bucket (or host) after {parts.scheme}://"
    return ""


def join(base: str, *names: str) -> str:
    """``base`` with path components appended; a URI keeps its query options."""
    if not is_uri(base):
        return str(Path(base).joinpath(*names))
    parts = urlsplit(base)
    path = "/".join([parts.path.rstrip("/"), *[n.strip("/") for n in names]])
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def filesystem(location: str):
    """(pyarrow filesystem, path on it) of a folder or URI."""
    import pyarrow.fs

    if not is_uri(location):
        return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())
    return pyarrow.fs.FileSystem.from_uri(location)


def mirror_root() -> Path:
    """Where local mirrors of object-store runs live (``SWEEPLAB_CACHE``, else ``~/.cache/sweeplab``)."""
    return Path(os.environ.get("SWEEPLAB_CACHE") or Path.home() / ".cache" / "sweeplab") / "runs"


class StorageUnreachable(RuntimeError):
    """The object store cannot be opened or written (before any trial starts)."""


@dataclass
class RunFolder:
    """One sweep run. ``location`` is what a user sees and resumes (a folder or a URI);
    ``local`` is where the driver writes its files (the folder itself, or a local mirror)."""

    location: str
    local: Path

    @classmethod
    def at(cls, location: str) -> "RunFolder":
        """The run at ``location`` as seen from this machine (its local copy, for an object store)."""
        return cls(location, _mirror_for(location) if is_uri(location) else Path(location))

    @property
    def remote(self) -> bool:
        return is_uri(self.location)

    def tune_path(self, *names: str) -> str:
        """A path or URI inside the run for Tune and Ray Train (``storage_path``, restore)."""
        return join(self.location, *names) if self.remote else str(self.local.joinpath(*names))

    def push(self, *names: str) -> None:
        """Upload driver files (all of ``DRIVER_FILES`` when none is named) to the object store."""
        if not self.remote:
            return
        import pyarrow.fs

        fs, base = filesystem(self.location)
        local_fs = pyarrow.fs.LocalFileSystem()
        for name in names or DRIVER_FILES:
            source = self.local / name
            if source.is_dir():
                pyarrow.fs.copy_files(str(source), f"{base}/{name}", source_filesystem=local_fs,
                                      destination_filesystem=fs)
            elif source.is_file():
                # a journal being appended to is copied as one snapshot: read, then write whole
                data = source.read_bytes()
                with fs.open_output_stream(f"{base}/{name}") as out:
                    out.write(data)

    def pull(self) -> None:
        """Download the driver files of an object-store run into a fresh local mirror."""
        if not self.remote:
            return
        import pyarrow.fs

        fs, base = filesystem(self.location)
        if self.local.exists():
            shutil.rmtree(self.local)
        self.local.mkdir(parents=True)
        local_fs = pyarrow.fs.LocalFileSystem()
        for name in DRIVER_FILES:
            info = fs.get_file_info(f"{base}/{name}")
            if info.type == pyarrow.fs.FileType.NotFound:
                continue
            if info.type == pyarrow.fs.FileType.Directory:
                (self.local / name).mkdir()
            pyarrow.fs.copy_files(f"{base}/{name}", str(self.local / name), source_filesystem=fs,
                                  destination_filesystem=local_fs)


def _mirror_for(location: str) -> Path:
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    return mirror_root() / f"{Path(urlsplit(location).path).name or 'run'}-{digest}"


def new_run_folder(storage_path: str, sweep_name: str) -> RunFolder:
    """A new, empty run ``<storage>/<sweep name>/<YYYYmmdd-HHMMSS>[-n]``; for an object store,
    checks it can be written before anything starts."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if not is_uri(storage_path):
        root = Path(storage_path) / sweep_name
        run_dir = root / stamp
        suffix = 1
        while run_dir.exists():
            run_dir = root / f"{stamp}-{suffix}"
            suffix += 1
        run_dir.mkdir(parents=True)
        return RunFolder(str(run_dir.resolve()), run_dir.resolve())
    import pyarrow.fs

    try:
        fs, base = filesystem(join(storage_path, sweep_name))
        taken = {Path(i.path).name for i in fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))}
        name, suffix = stamp, 1
        while name in taken:
            name, suffix = f"{stamp}-{suffix}", suffix + 1
        location = join(storage_path, sweep_name, name)
        fs.create_dir(f"{base}/{name}")
        with fs.open_output_stream(f"{base}/{name}/.created") as out:  # proves the store is writable
            out.write(datetime.now().isoformat().encode())
    except (OSError, ValueError) as exc:
        raise StorageUnreachable(f"storage.path {storage_path}: cannot write there: {exc}") from exc
    folder = RunFolder(location, _mirror_for(location))
    if folder.local.exists():
        shutil.rmtree(folder.local)
    folder.local.mkdir(parents=True)
    return folder


def _is_run(fs, path: str) -> bool:
    import pyarrow.fs

    infos = fs.get_file_info([f"{path}/{RESOLVED_FILE}", f"{path}/{STATE_FILE}"])
    return all(i.type == pyarrow.fs.FileType.File for i in infos)


def open_run_folder(target: str, storage: str = "sweeplab_results") -> RunFolder:
    """An existing run: a run folder or URI, or the newest run of a sweep (its folder, URI or
    name under ``storage``). An object-store run's driver files are downloaded first."""
    import pyarrow.fs

    candidates = [target] if is_uri(target) else [target, join(storage, target)]
    for candidate in candidates:
        try:
            fs, path = filesystem(candidate)
            if _is_run(fs, path):
                found = candidate
            else:
                subs = sorted(i.base_name for i in fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
                              if i.type == pyarrow.fs.FileType.Directory and _is_run(fs, f"{path}/{i.base_name}"))
                if not subs:
                    continue
                found = join(candidate, subs[-1])
        except (OSError, ValueError) as exc:
            if is_uri(candidate):
                raise StorageUnreachable(f"{candidate}: cannot read the run there: {exc}") from exc
            continue
        if is_uri(found):
            folder = RunFolder.at(found)
            folder.pull()
            return folder
        local = Path(found).resolve()
        return RunFolder(str(local), local)
    raise FileNotFoundError(
        f"no sweep run found at {target!r} (looked for {RESOLVED_FILE} and {STATE_FILE} in "
        + ", ".join(candidates) + " and their newest sub-folder)"
    )
