"""A warm process that starts training jobs without paying Python's and PyTorch's start-up each time.

Starting ``clrepro train`` costs seconds (the interpreter, ``import torch``, torchvision) before a
quick run's one second of training. The workflow starts one worker when a local DAG starts
(``worker: true`` in the configuration): it imports the training code once and listens on a Unix
socket named by ``$CLREPRO_WORKER``. Each job's ``clrepro train`` is then a light client: it sends
its arguments, working folder, environment and its stdin/stdout/stderr (the job's log) to the
worker, which forks a child that runs exactly what ``clrepro train`` would have run in that
process. The client forwards SIGTERM/SIGINT to the child (which checkpoints, as always) and exits
with the child's exit status, so outputs, logs, checkpoints, resume and retries are those of a
job run on its own. When the worker cannot be reached, or the package's files changed since it
started (it would run old code), the client runs the job itself. The worker also verifies and
decodes each dataset once, the first time a job names it, and its later jobs take it from there
while the files are unchanged (``data.preload``).
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = "CLREPRO_WORKER"
COMMANDS = ("train",)          # the commands a worker runs
_HEADER = struct.Struct("!Q")  # the request's length, sent with the three file descriptors
PACKAGE = Path(__file__).resolve().parent


def code_signature() -> list:
    """Size and modification time of every module of the package: what a worker checks to refuse
    a job after the code it imported has changed on disk."""
    return sorted([str(p.relative_to(PACKAGE)), p.stat().st_size, p.stat().st_mtime_ns]
                  for p in PACKAGE.rglob("*.py"))


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code   # killed by signal N: 128 + N, as a shell reports it


# -- the client: `clrepro train` when $CLREPRO_WORKER is set -----------------------------------------

def delegate(argv: list[str]) -> int | None:
    """Run ``clrepro <argv>`` in the worker named by ``$CLREPRO_WORKER`` and return its exit status,
    or None when there is no worker to run it (the caller then runs it itself)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        env = {k: v for k, v in os.environ.items() if k != ENV}
        payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}).encode()
        socket.send_fds(sock, [_HEADER.pack(len(payload))], [0, 1, 2])
        sock.sendall(payload)
        reader = sock.makefile("rb")
        reply = json.loads(reader.readline() or b"{}")
    except (OSError, ValueError):
        sock.close()
        return None
    if "pid" not in reply:   # stale code, or a worker shutting down
        sock.close()
        return None
    child = reply["pid"]

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: _signal(child, signum))
    line = reader.readline()
    if line:
        return int(json.loads(line)["exit"])
    # the worker died first: end its job as SIGTERM does (it checkpoints) before this job ends, so
    # that a retry never trains the same run beside it
    _signal(child, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"clrepro: the worker {path} ended before its job (pid {child}), which was stopped; rerun the "
          "same command: it resumes from the job's checkpoint", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie has ended (its parent has not reaped it yet)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- the worker --------------------------------------------------------------------------------------

def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the job's process and run its command; never returns."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from . import cli
        cli.main(request["argv"])
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:   # what an uncaught exception would print before the process ended
        import traceback
        traceback.print_exc()
    finally:   # whatever happens, the child ends here: it never returns into the worker's loop
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client went away mid-request")
        data += chunk
    return data


def serve(path: str, parent: int | None = None) -> None:
    """Listen on ``path`` until SIGTERM, or until the process ``parent`` (the DAG) is gone."""
    import torch  # noqa: F401  -- what every job would import: done once, here

    from . import cli, config, data, methods, models, scenarios, train  # noqa: F401
    signature = code_signature()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C reaches jobs through their clients
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.tmp"
    listener.bind(tmp)
    listener.listen(64)
    os.rename(tmp, path)   # the path appears when the worker accepts jobs
    jobs: dict[int, socket.socket] = {}   # child pid -> its client's connection
    try:
        while not stop and (parent is None or os.getppid() == parent):
            watched = [listener, *(c for c in jobs.values() if c.fileno() >= 0)]
            try:
                ready, _, _ = select.select(watched, [], [], 0.2)
            except InterruptedError:
                ready = []
            for conn in ready:
                if conn is listener:
                    _accept(listener, jobs, signature)
                    continue
                pid = next(p for p, c in jobs.items() if c is conn)
                try:
                    gone = not conn.recv(1)
                except OSError:
                    gone = True
                if gone:   # its client was killed and cannot pass a signal on: end the job as SIGTERM does
                    conn.close()
                    _signal(pid, signal.SIGTERM)
                    _say(f"the client of job {pid} is gone: sent it SIGTERM (it checkpoints and ends)")
            _reap(jobs)
    finally:
        for pid in jobs:
            _signal(pid, signal.SIGTERM)
        Path(path).unlink(missing_ok=True)


def _say(message: str) -> None:
    print(f"clrepro worker: {message}", file=sys.stderr, flush=True)


def command_of(argv: list[str]) -> str | None:
    """The subcommand of ``clrepro <argv>`` (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _accept(listener: socket.socket, jobs: dict, signature: list) -> None:
    conn, _ = listener.accept()
    conn.settimeout(30)
    fds: list[int] = []
    try:
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = json.loads(_recv_exactly(conn, _HEADER.unpack(header)[0]))
        if len(fds) != 3 or command_of(request["argv"]) not in COMMANDS:
            raise ValueError("not a job this worker runs")
        if code_signature() != signature:   # the code changed since it was imported: the client runs it
            conn.sendall(b'{"stale": true}\n')
            _say("refused a job: the package's files changed since this worker imported them; "
                 "the job runs in a process of its own")
            raise ValueError("stale")
    except (OSError, ValueError, KeyError, struct.error):
        conn.close()
        for fd in fds:
            os.close(fd)
        return
    _preload(request)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        listener.close()
        for other in jobs.values():
            other.close()
        conn.close()
        _run_child(request, fds)
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    out = request["argv"][request["argv"].index("--out") + 1] if "--out" in request["argv"] else ""
    _say(f"forked job {pid}: clrepro {command_of(request['argv'])} {out}")
    jobs[pid] = conn


def _preload(request: dict) -> None:
    """Verify and decode the job's datasets here, before the fork, the first time a job names them
    (``data.preload``): the jobs after it skip the checksums and decoding while the files are
    unchanged. Whatever fails is left to the job, which reads the files itself and says what is wrong."""
    import torch

    from . import cli, config, data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # no thread team in the worker: the forked jobs would inherit it dead
    try:
        a, _ = cli.parser().parse_known_args(request["argv"])   # as the job will read its arguments
        spec = json.loads(a.spec)
        root = Path(request["cwd"]) / (a.data_root or spec["data"]["root"])
        for name in config.dataset_names(spec):
            if data.preload(name, root, spec["data"].get("checksums")):
                _say(f"verified and decoded {name} in {root} for the jobs that read it")
    except (Exception, SystemExit):   # noqa: BLE001 -- the job itself reports the problem
        pass
    finally:
        torch.set_num_threads(threads)


def _reap(jobs: dict) -> None:
    while jobs:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = jobs.pop(pid, None)
        if conn is not None and conn.fileno() >= 0:
            try:
                conn.sendall(json.dumps({"exit": _exit_code(status)}).encode() + b"\n")
            except OSError:
                pass
            conn.close()


# -- starting and stopping one, for a DAG ------------------------------------------------------------

def start(log: str | os.PathLike, env: dict | None = None, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start a worker for this process (it ends with it), in ``env`` (default: this one's), writing
    what it says to ``log``, and wait until it accepts jobs; returns the process and its socket's
    path (``$CLREPRO_WORKER``)."""
    path = os.path.join(tempfile.mkdtemp(prefix="clrepro-worker-"), "socket")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "clrepro", "worker", "--socket", path,
                                 "--parent", str(os.getpid())], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)   # not in the terminal's group: Ctrl-C goes to the jobs
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the clrepro worker did not start (exit status {proc.poll()}); {log} says why")
        time.sleep(0.05)
    return proc, path


def stop(proc: subprocess.Popen, path: str) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    Path(path).unlink(missing_ok=True)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass
