"""Compile and run model-written C in the sandbox; every program's fate is reported, never raised.

    result = run_c('#include <stdio.h>\\nint main(void) { puts("hi"); return 0; }')
    result.status, result.stdout        # "ok", "hi\\n"
    compiled = compile_c({"a.c": src}, workdir, output="prog")   # .status "ok" or "compile_error"

The Python sandbox's machinery does the outside layers (slm.eval.sandbox: a scratch directory deleted afterwards,
its own session killed whole at the end, the wall-clock timeout and the output limit enforced while reading the
pipes, a scrubbed environment, `unshare -n`). Inside, the same bootstrap (_sandbox_boot.py --native) sets the
same resource limits and, because compiled code has no audit hook to stop it, two kernel filters before exec:
- Landlock: reads and executions only under the system's library roots (and, to compile, the tool chain), any
  change only inside the scratch directory; TCP bind/connect and signals to processes outside are denied;
- seccomp (running, not compiling; gcc needs its children): fork, vfork, clone, sockets, kill, ptrace,
  execveat and raising limits end the program with SIGSYS, reported "forbidden". As root RLIMIT_NPROC does not
  bind, so this filter is what contains a fork bomb.
`native_confinement()` says which layers this kernel provides (Landlock needs Linux 5.13+).
"""
from __future__ import annotations

import functools
import math
import shutil
import signal
import sys
from pathlib import Path

from slm.eval._sandbox_boot import EXIT_FORBIDDEN
from slm.eval.sandbox import BOOT, SandboxResult, Status, _network_isolation, run_process, scratch_directory

# What a compiled program may read (the dynamic loader, libc, libm) and what gcc needs besides.
RUN_READ_ROOTS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache", "/dev/null", "/dev/urandom",
                  "/dev/zero")
COMPILE_READ_ROOTS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/alternatives", "/dev/null",
                      "/dev/urandom")
# No -w: it would silence the -Werror= diagnostics too (gcc 12 only warns of implicit declarations).
DEFAULT_FLAGS = ("-O0", "-fwrapv", "-fno-strict-aliasing", "-Werror=implicit-function-declaration",
                 "-Werror=implicit-int")


def compile_c(sources: dict[str, str | bytes], workdir: str | Path, output: str | None = "prog",
              flags: tuple[str, ...] = DEFAULT_FLAGS, libs: tuple[str, ...] = ("-lm",), compiler: str = "gcc",
              extra_args: tuple[str, ...] = (), timeout: float = 30.0, memory_mb: int = 1024) -> SandboxResult:
    """Write `sources` into `workdir` and run the compiler on them there (no network, limits, Landlock).

    `.c` files are compiled and linked into `output`, other files (headers, objects) are only written; with
    "-c" or "-S" in `extra_args` the compiler stops early and `output` names its one result (None: one result
    per input, named as the compiler names them: a.c -> a.s). The result's status
    is "ok", "compile_error" (the diagnostics are in .stderr) or a sandbox status such as "timeout".
    """
    workdir = Path(workdir)
    for name, text in sources.items():
        target = workdir / name
        target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    compiler_path = shutil.which(compiler)
    if compiler_path is None:
        return SandboxResult("compile_error", "", f"compiler {compiler!r} not found", None, 0.0)
    inputs = [n for n in sources if n.endswith((".c", ".o", ".s"))]
    argv = [compiler_path, *flags, *extra_args, *inputs, *(["-o", output] if output else []),
            *([] if extra_args else libs)]
    result = _run_native(argv, workdir, timeout=timeout, memory_mb=memory_mb, confine=False,
                         read_roots=COMPILE_READ_ROOTS, max_output_bytes=1 << 20, max_file_bytes=256 << 20)
    if result.status == "error":
        result.status = "compile_error"
    return result


def run_binary(workdir: str | Path, program: str = "prog", args: tuple[str, ...] = (), timeout: float = 5.0,
               memory_mb: int = 256, cpu_seconds: float | None = None, max_output_bytes: int = 1 << 20,
               max_file_bytes: int = 1 << 20, stdin: str | bytes | None = None) -> SandboxResult:
    """Run a compiled program from `workdir` under every layer above; status as run_python reports it."""
    path = str(Path(workdir, program).resolve())
    cpu = math.ceil(timeout) + 1 if cpu_seconds is None else max(1, math.ceil(cpu_seconds))
    return _run_native([path, *args], workdir, timeout=timeout, memory_mb=memory_mb, confine=True,
                       read_roots=RUN_READ_ROOTS, max_output_bytes=max_output_bytes, max_file_bytes=max_file_bytes,
                       cpu_seconds=cpu, stdin=stdin)


def run_c(source: str, flags: tuple[str, ...] = DEFAULT_FLAGS, compile_timeout: float = 30.0, **run_limits
          ) -> SandboxResult:
    """Compile one C program and run it in a fresh scratch directory; status "compile_error" if it fails."""
    with scratch_directory("slm-csandbox-") as workdir:
        compiled = compile_c({"main.c": source}, workdir, flags=flags, timeout=compile_timeout)
        if compiled.status != "ok":
            return compiled
        return run_binary(workdir, **run_limits)


def _run_native(argv: list[str], workdir, timeout: float, memory_mb: int, confine: bool, read_roots,
                max_output_bytes: int, max_file_bytes: int, cpu_seconds: int | None = None,
                stdin=None) -> SandboxResult:
    config = {"cpu_seconds": cpu_seconds or math.ceil(timeout) + 1, "memory_bytes": int(memory_mb) << 20,
              "max_file_bytes": int(max_file_bytes), "max_processes": 0 if not confine else 1,
              "confine": int(confine), "read": ":".join(read_roots)}

    def make_argv(_result_fd: int) -> list[str]:
        return [*_network_isolation(), sys.executable, "-I", "-S", "-B", BOOT, "--native",
                *(f"{k}={v}" for k, v in config.items()), "--", *argv]

    return run_process(make_argv, str(workdir), timeout, max_output_bytes, stdin, _native_status)


def _native_status(returncode: int) -> Status:
    if returncode == 0:
        return "ok"
    if returncode == EXIT_FORBIDDEN or returncode == -signal.SIGSYS:
        return "forbidden"
    if returncode == -signal.SIGXCPU:
        return "cpu_limit"
    if returncode == -signal.SIGXFSZ:
        return "file_limit"
    return "killed" if returncode < 0 else "error"


@functools.lru_cache(maxsize=None)
def native_confinement() -> dict:
    """Which layers contain native programs here: Landlock ABI (0: none), seccomp, network namespace."""
    import ctypes
    import os

    from slm.eval._sandbox_boot import SECCOMP_DENY, landlock_abi

    try:
        abi = landlock_abi(ctypes.CDLL(None, use_errno=True))
    except OSError:
        abi = 0
    return {"landlock_abi": abi, "seccomp": os.uname().machine in SECCOMP_DENY,
            "network_namespace": bool(_network_isolation())}
