"""Where a sweep run lives: a folder (local or a shared filesystem) or an object store.

``storage.path`` of a sweep file is either a folder or an object-store URI that
pyarrow opens (``s3://bucket/prefix``, ``gs://…``, ``abfs://…``, ``hdfs://…``;
pyarrow's query options such as ``?endpoint_override=host:port&scheme=http`` for
an S3-compatible server pass through). Tune writes trials, checkpoints and its
experiment state there itself. The driver's own files (the resolved sweep file,
``state.json``, the Optuna journal) need a POSIX file (the journal is appended to
under a lock), so with an object store the driver works in a local copy of them
and uploads them (the journal with every snapshot of the searcher, see
``searcher.PrunedAwareOptunaSearch``); ``sweeplab resume URI`` downloads them again,
on any machine. Credentials come from the environment (``AWS_ACCESS_KEY_ID``…, an
instance profile), never from the URI: a sweep file's path is logged and tagged.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# schemes pyarrow.fs.FileSystem.from_uri opens as an object store or a remote filesystem
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
# query options that carry a secret (pyarrow's, Azure SAS tokens)
SECRET_OPTIONS = ("secret", "password", "token", "sig", "key")

RESOLVED_FILE = "sweep.yaml"  # the resolved sweep file (profile and --set applied)
STATE_FILE = "state.json"  # MLflow experiment and parent runs, which studies are complete
JOURNAL_FILE = "optuna.journal"  # the Optuna studies
SPACES_FOLDER = "search_spaces"  # copies of the studies' search spaces
LOCK_FILE = ".lock"  # held by the process driving the run
# the driver's files, uploaded beside Tune's experiment folders
DRIVER_FILES = (RESOLVED_FILE, STATE_FILE, JOURNAL_FILE, SPACES_FOLDER)
RUN_NAME = re.compile(r"^\d{8}-\d{6}(-[0-9a-z]+)?$")  # <YYYYmmdd-HHMMSS>[-suffix]


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def check_storage_uri(value: str) -> str:
    """The problem with an object-store URI as a sweep's ``storage.path`` (empty when none)."""
    parts = urlsplit(value)
    if parts.scheme not in OBJECT_STORE_SCHEMES:
        return (f"{value!r}: unknown storage scheme {parts.scheme!r}; allowed: a folder, or a URI with one of "
                + ", ".join(f"{s}://" for s in OBJECT_STORE_SCHEMES))
    secret_options = [k for k, _ in parse_qsl(parts.query) if any(word in k.lower() for word in SECRET_OPTIONS)]
    if parts.password is not None or secret_options:
        where = f"query option {secret_options[0]!r}" if secret_options else "user:password@"
        hidden = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
        return (f"{hidden}: a credential in the URI ({where}) would be logged with the sweep; give it in the "
                "environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, "
                "AZURE_STORAGE_ACCOUNT_KEY, …) or the machine's instance profile")
    if not parts.netloc:
        return f"{value!r}: no bucket (or host) after {parts.scheme}://"
    return ""


def canonical(location: str) -> str:
    """One spelling of a run's location: a folder made absolute; a URI with its path's repeated
    and trailing slashes removed (its query options kept)."""
    if not is_uri(location):
        return str(Path(location).expanduser().resolve())
    parts = urlsplit(location)
    path = re.sub("/+", "/", parts.path).rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


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


def upload_file(source: Path, location: str) -> None:
    """Copy one local file to ``location`` (a URI) as one snapshot: read whole, then written whole
    (a journal being appended to is never uploaded half-written)."""
    data = source.read_bytes()
    fs, path = filesystem(location)
    with fs.open_output_stream(path) as out:
        out.write(data)


def mirror_root() -> Path:
    """Where local copies of object-store runs live (``$SWEEPLAB_CACHE/runs``, else ``~/.cache/sweeplab/runs``)."""
    return Path(os.environ.get("SWEEPLAB_CACHE") or Path.home() / ".cache" / "sweeplab") / "runs"


def _mirror_for(location: str) -> Path:
    """The local copy of an object-store run on this machine: named by the run's bucket and path
    (not its query options, which may name an endpoint differently on another machine)."""
    parts = urlsplit(canonical(location))
    digest = hashlib.sha256(f"{parts.scheme}://{parts.netloc}{parts.path}".encode()).hexdigest()[:16]
    return mirror_root() / f"{Path(parts.path).name or 'run'}-{digest}"


class StorageUnreachable(RuntimeError):
    """The object store cannot be opened, read or written."""


@dataclass
class RunFolder:
    """One sweep run. ``location`` is what a user sees and resumes (a folder or a URI);
    ``local`` is where the driver writes its files (the folder itself, or a local copy)."""

    location: str
    local: Path

    @classmethod
    def at(cls, location: str) -> "RunFolder":
        """The run at ``location`` as seen from this machine (its local copy, for an object store)."""
        location = canonical(location)
        return cls(location, _mirror_for(location) if is_uri(location) else Path(location))

    @property
    def remote(self) -> bool:
        return is_uri(self.location)

    @property
    def lock_path(self) -> Path:
        """The lock of the process driving this run on this machine (beside a local copy, which
        is replaced when downloaded)."""
        return self.local.with_name(self.local.name + LOCK_FILE) if self.remote else self.local / LOCK_FILE

    def tune_path(self, *names: str) -> str:
        """A path or URI inside the run for Tune and Ray Train (``storage_path``, restore)."""
        return join(self.location, *names) if self.remote else str(self.local.joinpath(*names))

    def push(self, *names: str) -> None:
        """Upload driver files (all of ``DRIVER_FILES`` when none is named) to the object store;
        files not written yet are skipped."""
        if not self.remote:
            return
        import pyarrow.fs

        for name in names or DRIVER_FILES:
            source = self.local / name
            if source.is_dir():
                fs, base = filesystem(self.location)
                pyarrow.fs.copy_files(str(source), f"{base}/{name}", source_filesystem=pyarrow.fs.LocalFileSystem(),
                                      destination_filesystem=fs)
            elif source.is_file():
                upload_file(source, join(self.location, name))

    def pull(self, into: Path | None = None) -> "RunFolder":
        """Download the driver files of an object-store run into ``into`` (default: this machine's
        local copy, which the caller must hold the lock of). The download goes to a new folder
        that replaces the old copy only once complete. Returns the run with that local copy."""
        if not self.remote:
            return self
        import pyarrow.fs

        target = into or self.local
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            fs, base = filesystem(self.location)
            local_fs = pyarrow.fs.LocalFileSystem()
            for name in DRIVER_FILES:
                info = fs.get_file_info(f"{base}/{name}")
                if info.type == pyarrow.fs.FileType.NotFound:
                    continue
                if info.type == pyarrow.fs.FileType.Directory:
                    (partial / name).mkdir()
                pyarrow.fs.copy_files(f"{base}/{name}", str(partial / name), source_filesystem=fs,
                                      destination_filesystem=local_fs)
        except (OSError, ValueError) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise StorageUnreachable(f"{self.location}: cannot download the run's files: {exc}") from exc
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return RunFolder(self.location, target)


def new_run_folder(storage_path: str, sweep_name: str) -> RunFolder:
    """A new, empty run ``<storage>/<sweep name>/<YYYYmmdd-HHMMSS>[-suffix]``; for an object store,
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
        return RunFolder.at(str(run_dir))
    # An object store has no exclusive create: a random suffix keeps two sweeps of one name started
    # in the same second (two queued jobs given slots at once) apart.
    folder = RunFolder.at(join(storage_path, sweep_name, f"{stamp}-{secrets.token_hex(3)}"))
    try:
        fs, base = filesystem(folder.location)
        fs.create_dir(base)
        with fs.open_output_stream(f"{base}/.created") as out:  # proves the store is writable
            out.write(datetime.now().isoformat().encode())
    except (OSError, ValueError) as exc:
        raise StorageUnreachable(f"storage.path {storage_path}: cannot write there: {exc}") from exc
    folder.local.mkdir(parents=True)
    return folder


def _is_run(fs, path: str) -> bool:
    import pyarrow.fs

    infos = fs.get_file_info([f"{path}/{RESOLVED_FILE}", f"{path}/{STATE_FILE}"])
    return all(i.type == pyarrow.fs.FileType.File for i in infos)


def find_run(target: str, storage: str = "sweeplab_results") -> RunFolder:
    """An existing run: a run folder or URI, or the newest run of a sweep (its folder, URI or name
    under ``storage``). An object-store run's files are not downloaded (see ``RunFolder.pull``)."""
    import pyarrow.fs

    candidates = [target] if is_uri(target) else [target, join(storage, target)]
    for candidate in candidates:
        try:
            fs, path = filesystem(candidate)
            if _is_run(fs, path.rstrip("/")):
                return RunFolder.at(candidate)
            runs = sorted(i.base_name for i in fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
                          if i.type == pyarrow.fs.FileType.Directory and RUN_NAME.match(i.base_name)
                          and _is_run(fs, f"{path.rstrip('/')}/{i.base_name}"))
        except (OSError, ValueError) as exc:
            if is_uri(candidate):
                raise StorageUnreachable(f"{candidate}: cannot read the run there: {exc}") from exc
            continue
        if runs:
            return RunFolder.at(join(candidate, runs[-1]))
    raise FileNotFoundError(
        f"no sweep run found at {target!r} (looked for {RESOLVED_FILE} and {STATE_FILE} in "
        + ", ".join(candidates) + " and their newest sub-folder)"
    )


class RunInUse(RuntimeError):
    """Another sweeplab process is running this sweep run."""


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold a run's lock (``RunFolder.lock_path``): two processes driving one sweep run on a machine
    (a resume started while the sweep still shuts down) would tell Optuna and MLflow everything twice."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise RunInUse(f"this sweep run is in use by another sweeplab process on this machine (pid {holder}, "
                           f"lock {lock_path}); wait for it to end or stop it, then resume") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
