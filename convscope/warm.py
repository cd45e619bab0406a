"""Warm start for Keras jobs (training, evaluation, embedding): Keras and the backend imported once, each job a fork.

A fresh training job spent most of its fixed cost importing (TensorFlow,
Keras, scikit-learn: 8-20 s on 2 shared cores) and tearing the interpreter
down again. Here the first training job of a backend starts a small server
process that imports all of that and waits; each job (scripts/train.py, the
client) hands it the call and its stdin/stdout/stderr over a Unix socket, the
server forks, and the child runs the call with the job's environment and
working directory, exactly as the job's own process would have. Nothing else
changes: a job is still one Snakemake job with its own outputs, log, params,
retries and epoch-backup resume; the backend's runtime (threads, GPU, memory
caps) starts in the child, after the job's environment is in place.

- The server never starts a backend runtime (no op runs in it), so forking is
  safe; it exits after IDLE_S seconds without a new job. Servers are told
  apart by interpreter, backend, the environment variables backends read at
  import and the convscope sources (an edit starts a new server), on an
  abstract Unix socket (Linux; elsewhere jobs run in their own process).
- The child dies with its client: if the job is killed (Snakemake, SLURM,
  Ctrl-C), the client's end of the socket closes and the child kills itself.
- Config key train.warm_start: false runs every job in its own process; so
  does every job under SLURM (a shared warm process would live outside the
  job's allocation, its CPUs, memory and time limit).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

IDLE_S = float(os.environ.get("CONVSCOPE_WARM_IDLE_S", "120"))
START_TIMEOUT_S = 180.0
# Modules each job would import anyway (convscope.training.run's path).
PRELOAD = (
    "keras",
    "sklearn.metrics",
    "convscope.training.run",
    "convscope.training.callbacks",
    "convscope.training.data",
    "convscope.training.strategies",
    "convscope.training.evaluate",
    "convscope.training.features",
    "convscope.models.build",
)
# Read by the backends at import: a server only serves clients that agree on them.
IMPORT_ENV_PREFIXES = (
    "KERAS_",
    "TF_",
    "XLA_",
    "JAX_",
    "CUDA_",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
)
PACKAGE = Path(__file__).resolve().parent


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds") and hasattr(os, "fork")


def server_key(backend: str) -> str:
    h = hashlib.sha1()
    h.update(f"{sys.executable}\0{backend}\0{os.getuid()}\0{sys.path}".encode())
    for k in sorted(os.environ):
        if k.startswith(IMPORT_ENV_PREFIXES):
            h.update(f"{k}={os.environ[k]}\0".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(f"{path}:{path.stat().st_mtime_ns}\0".encode())
    return h.hexdigest()[:20]


def _address(key: str) -> str:
    return f"\0convscope-warm-{key}"


# ---- framing: 4-byte length + pickle --------------------------------------------


def _send(sock: socket.socket, obj, fds=()) -> None:
    data = pickle.dumps(obj)
    msg = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [msg], list(fds))
    else:
        sock.sendall(msg)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("warm server closed the connection")
        buf += chunk
    return buf


def _recv(sock: socket.socket, with_fds: int = 0):
    fds = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, 4, with_fds)
        head += _recv_exact(sock, 4 - len(head))
    else:
        head = _recv_exact(sock, 4)
    (n,) = struct.unpack("!I", head)
    return pickle.loads(_recv_exact(sock, n)), fds


# ---- client (the Snakemake job) ---------------------------------------------------


def call(target: str, kwargs: dict, *, backend: str, enabled: bool = True) -> None:
    """Run `target` ("module:function") with kwargs in a warm fork, or here when that is off or unavailable.

    Raises SystemExit with the child's exit status when it fails (its
    traceback went to the job's stderr and log, as in a fresh process).
    """
    # Under SLURM a job's processes must stay inside its allocation, which a shared warm process would not.
    if not (enabled and supported()) or "SLURM_JOB_ID" in os.environ:
        return resolve(target)(**kwargs)
    key = server_key(backend)
    sock = _connect(key, backend)
    if sock is None:
        log.warning("no warm training process could be started: running this job in its own process")
        return resolve(target)(**kwargs)
    with sock:
        request = {
            "target": target,
            "kwargs": kwargs,
            "env": dict(os.environ),
            "cwd": os.getcwd(),
        }
        _send(sock, request, fds=(0, 1, 2))
        (pid,), _ = _recv(sock)
        previous = {
            s: signal.signal(s, lambda signum, _f: os.kill(pid, signum)) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            (status,), _ = _recv(sock)
        except ConnectionError:
            status = 1
            print(
                f"warm training process {pid} ended without a result (killed?)",
                file=sys.stderr,
            )
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    if status:
        raise SystemExit(status)


def _connect(key: str, backend: str, timeout: float = START_TIMEOUT_S) -> socket.socket | None:
    deadline = time.monotonic() + timeout
    server = None
    while time.monotonic() < deadline:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(_address(key))
            return sock
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
        if server is None:
            server = _spawn(key, backend)
        elif server.poll() is not None and server.returncode != 0:
            return None  # it could not start (exit 0: another job's server won the address)
        time.sleep(0.05)
    return None


def _spawn(key: str, backend: str) -> subprocess.Popen:
    # A session of its own: Snakemake's signals to the job's process group do not reach it.
    return subprocess.Popen(
        [sys.executable, "-m", "convscope.warm", backend, key],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# ---- server -------------------------------------------------------------------------


def serve(backend: str, key: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_address(key))
    except OSError:
        return  # another job started this server first
    listener.listen(64)
    from convscope import backend as backend_lib

    backend_lib.select(backend)
    for module in PRELOAD:
        importlib.import_module(module)
    if _runtime_started(backend):
        # A fork of a process whose GPU runtime is up would share (and break) its context.
        sys.exit("warm start: the backend's runtime started during the imports; jobs run in their own process")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener.settimeout(IDLE_S)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return
        if not _same_user(conn):
            conn.close()  # abstract sockets have no file permissions: refuse other users' calls
            continue
        if os.fork() == 0:
            listener.close()
            _child(conn)  # never returns
        conn.close()


def _same_user(conn: socket.socket) -> bool:
    """Whether the client runs as this server's user (SO_PEERCRED: pid, uid, gid)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _runtime_started(backend: str) -> bool:
    """Whether the backend has created a device runtime (then forking is unsafe)."""
    if backend == "jax":
        from jax._src import xla_bridge  # private: the device backends created so far

        return bool(getattr(xla_bridge, "_backends", {}))
    from tensorflow.python.eager import (
        context,  # private: whether the eager context exists
    )

    return getattr(context.context(), "_context_handle", None) is not None


def _child(conn: socket.socket) -> None:
    status = 1
    try:
        conn.settimeout(None)
        request, fds = _recv(conn, with_fds=3)
        for fd, target_fd in zip(fds, (0, 1, 2)):
            os.dup2(fd, target_fd)
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setpgrp()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["CONVSCOPE_WARM"] = "1"
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        _send(conn, (os.getpid(),))
        threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
        try:
            resolve(request["target"])(**request["kwargs"])
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        _send(conn, (status,))
    finally:
        os._exit(status)


def _die_with_client(conn: socket.socket) -> None:
    """The client sends nothing more: EOF means it was killed, and so is its job."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
