"""Run model-written Python in a separate, limited process; every program's fate is reported, never raised.

    result = run_python("print(sum(range(10)))", timeout=5)
    result.status, result.stdout        # "ok", "45\n"
    results = run_many([code1, code2], workers=8, timeout=2)

Containment, from the outside in:
- a new session (process group) that is killed whole when the program ends, times out or floods its output;
- `unshare -n` (where the kernel lets us): a network namespace with no interfaces;
- `python -I -S -B`: isolated mode, no site-packages, no .pyc writes; a scrubbed environment (no secrets)
  and a fresh temporary working directory that is deleted afterwards;
- resource limits set by the bootstrap (_sandbox_boot.py): address space, CPU seconds, file size, core dumps
  and process count (the last one only binds non-root users, so process creation is also refused below);
- an audit hook that ends the program with status "forbidden" when it starts a process, opens a socket,
  loads native code, writes outside its directory, reads outside the standard library and its directory,
  or changes its limits.
The parent enforces the wall-clock timeout and the output limit itself while reading the pipes.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from slm.eval._sandbox_boot import EXIT_FORBIDDEN, EXIT_MEMORY, format_config

BOOT = str(Path(__file__).with_name("_sandbox_boot.py"))
Status = Literal["ok", "error", "timeout", "cpu_limit", "memory", "output_limit", "file_limit", "forbidden",
                 "killed"]
# Only these variables reach the program; everything else (tokens, keys, proxies) stays behind.
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
             "PYTHONIOENCODING": "utf-8"}


@dataclass
class SandboxResult:
    status: Status
    stdout: str
    stderr: str
    returncode: int | None
    duration: float  # wall-clock seconds, start of the child to its end
    result: str | None = None  # repr() of the `entry` expression's value, when one was given and it ran

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_python(code: str, timeout: float = 10.0, memory_mb: int = 512, cpu_seconds: float | None = None,
               max_output_bytes: int = 1 << 20, max_file_bytes: int = 16 << 20, max_processes: int = 1,
               stdin: str | bytes | None = None, entry: str | None = None) -> SandboxResult:
    """Run `code` as __main__ in a fresh sandboxed interpreter and report how it ended.

    timeout: wall-clock seconds. cpu_seconds: CPU-time limit (default: a little over the timeout, so that a busy
    loop is reported as "timeout"). memory_mb: address-space limit. max_output_bytes: stdout + stderr together.
    max_file_bytes: the largest file the program may write (in its own directory). max_processes: 1 forbids
    starting processes; more allows them under RLIMIT_NPROC (which binds only non-root users).
    entry: an expression evaluated after the program, e.g. "solution()"; its repr() is returned in `.result`.
    """
    with scratch_directory() as workdir:
        Path(workdir, "main.py").write_text(code, encoding="utf-8")

        def argv(result_fd: int) -> list[str]:
            config = {
                "cpu_seconds": math.ceil(timeout) + 1 if cpu_seconds is None else max(1, math.ceil(cpu_seconds)),
                "memory_bytes": int(memory_mb) << 20, "max_file_bytes": int(max_file_bytes),
                "max_processes": int(max_processes), "entry": entry or "", "result_fd": result_fd,
                "max_result_bytes": int(max_output_bytes), "readable": _readable_roots(),
            }
            return [*_network_isolation(), sys.executable, "-I", "-S", "-B", BOOT, *format_config(config)]

        return run_process(argv, workdir, timeout, max_output_bytes, stdin, _status_from_exit)


@contextlib.contextmanager
def scratch_directory(prefix: str = "slm-sandbox-"):
    """A fresh temporary working directory for one sandboxed run, deleted afterwards whatever happens."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_process(make_argv, workdir: str, timeout: float, max_output_bytes: int, stdin: str | bytes | None,
                status_from_exit) -> SandboxResult:
    """Start `make_argv(result_fd)` in `workdir` (own session, scrubbed environment), enforce the wall-clock
    timeout and the output limit while reading its pipes, kill its whole process group, report how it ended.

    The program may write a result to the file descriptor it is given (run_python's `entry`); the C sandbox
    ignores it. `status_from_exit(returncode)` names an ordinary exit (the Python and native children differ).
    """
    read_fd, write_fd = os.pipe()
    try:
        argv = make_argv(write_fd)
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=workdir, env={**CLEAN_ENV, "HOME": workdir, "TMPDIR": workdir},
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(write_fd,),
                                start_new_session=True, close_fds=True)
        os.close(write_fd)
        write_fd = -1
        if stdin is not None:
            _feed(proc, stdin.encode() if isinstance(stdin, str) else stdin)
        out, err, res, why = _collect(proc, read_fd, start + timeout, max_output_bytes)
        _kill_group(proc)
        returncode = proc.wait()
        duration = time.monotonic() - start
        status = why or status_from_exit(returncode)
        result = res.decode("utf-8", "replace") if res and status == "ok" else None
        return SandboxResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                             returncode, duration, result)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


def run_many(programs: Iterable[str], workers: int | None = None, **limits) -> list[SandboxResult]:
    """Run many programs, `workers` at a time (default: the CPU count); results in the programs' order."""
    programs = list(programs)
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(programs) <= 1:
        return [run_python(p, **limits) for p in programs]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the waiting happens in child processes
        return list(pool.map(functools.partial(_run_one, limits), programs))


def _run_one(limits: dict, code: str) -> SandboxResult:
    return run_python(code, **limits)


def _status_from_exit(returncode: int) -> Status:
    if returncode == 0:
        return "ok"
    if returncode == EXIT_FORBIDDEN:
        return "forbidden"
    if returncode == EXIT_MEMORY:
        return "memory"
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            return "cpu_limit"
        if sig == signal.SIGXFSZ:
            return "file_limit"
        return "killed"
    return "error"


def _collect(proc, result_fd: int, deadline: float, max_output: int):
    """Read stdout, stderr and the result pipe until all close, the deadline passes or output overflows."""
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray(), result_fd: bytearray()}
    outputs = (proc.stdout.fileno(), proc.stderr.fileno())
    with selectors.DefaultSelector() as sel:
        for fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
        open_fds = set(buffers)
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return *_bytes(buffers, outputs, result_fd), "timeout"
            for key, _ in sel.select(timeout=min(remaining, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                    continue
                buffers[key.fd] += chunk
                if key.fd in outputs and sum(len(buffers[fd]) for fd in outputs) > max_output:
                    out, err, res = _bytes(buffers, outputs, result_fd)
                    keep = max_output - len(out[:max_output])
                    return out[:max_output], err[:keep], res, "output_limit"
    # All pipes closed: the program (and anything it started) is done; wait briefly for the exit status.
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return *_bytes(buffers, outputs, result_fd), "timeout"
    return *_bytes(buffers, outputs, result_fd), None


def _bytes(buffers, outputs, result_fd):
    return bytes(buffers[outputs[0]]), bytes(buffers[outputs[1]]), bytes(buffers[result_fd])


def _feed(proc, data: bytes) -> None:
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the program exited or closed stdin without reading it all; that is its business


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session id is the child's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


@functools.lru_cache(maxsize=None)
def _readable_roots() -> tuple[str, ...]:
    """What a program may read besides its own directory: the standard library and a few harmless devices."""
    paths = sysconfig.get_paths()
    stdlib = {paths["stdlib"], os.path.join(paths["stdlib"], "lib-dynload"),
              os.path.join(sys.base_prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}")}
    return tuple(sorted(stdlib)) + ("/dev/null", "/dev/urandom", "/dev/zero", "/usr/share/zoneinfo",
                                    "/etc/localtime")


@functools.lru_cache(maxsize=None)
def _network_isolation() -> tuple[str, ...]:
    """`unshare -n` when it works here (root, or user namespaces enabled); otherwise the audit hook alone."""
    unshare = shutil.which("unshare")
    if not unshare:
        return ()
    try:
        ok = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (unshare, "-n") if ok else ()


def network_isolated() -> bool:
    """Whether sandboxed programs run in their own network namespace on this machine."""
    return bool(_network_isolation())
