"""An S3-compatible server on 127.0.0.1 for tests and benchmarks (moto's server: the S3 REST API,
in memory, from the ``dev`` extra), in its own session and stopped by its process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sweeplab-test", "AWS_SECRET_ACCESS_KEY": "sweeplab-test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def local_s3_server(log_path: Path):
    """Yields the server's ``host:port``; its access log goes to ``log_path``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the S3 server did not start; see {log_path}") from None
                    time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            try:
                os.killpg(server.pid, signal.SIGKILL)  # its own session: only the server
            except ProcessLookupError:
                pass
            server.wait()


def new_bucket(endpoint: str, prefix: str = "sweeps") -> str:
    """A fresh bucket; returns ``s3://<bucket>/results?<options>`` (the endpoint in pyarrow's query
    options; the credentials, as users give them, in the environment: ``CREDENTIALS``)."""
    import pyarrow.fs

    bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
    options = f"endpoint_override={endpoint}&scheme=http&region=us-east-1"
    fs, _ = pyarrow.fs.FileSystem.from_uri(f"s3://{bucket}?{options}&allow_bucket_creation=true")
    fs.create_dir(bucket)
    return f"s3://{bucket}/results?{options}"
