"""The first code a sandboxed child runs (`python -I -S -B _sandbox_boot.py KEY=VALUE... -- READABLE...`), before the model's code.

It sets the resource limits, installs an audit hook that ends the process on anything the sandbox forbids
(starting processes, sockets, writes outside the working directory, reads outside the standard library and the
working directory, changing limits), then runs main.py as __main__. It imports only the standard library: the
child runs with -S, so nothing from site-packages (slm included) is importable.

The exit code tells the parent what happened (the parent maps it to a status):
    0 ok, 1 uncaught exception, EXIT_FORBIDDEN a forbidden operation, EXIT_MEMORY an uncaught MemoryError.
An audit hook is a guard for the sandbox's rules, not a security boundary against a determined attacker: the
process group kill, resource limits, the scrubbed environment and the network namespace carry the rest.
"""
import os
import resource
import sys

import _signal  # the C module: `signal` pulls in enum and collections, a third of our start-up time

EXIT_FORBIDDEN = 113
EXIT_MEMORY = 114

# Audit events that start processes, open network connections, load native code or change limits.
FORBIDDEN_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system", "os.spawn", "os.startfile", "os.kill",
    "os.killpg", "os.setuid", "os.chroot", "pty.spawn", "subprocess.Popen", "socket.__new__", "socket.connect",
    "socket.bind", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "ctypes.dlopen", "ctypes.dlsym",
    "ctypes.cdata", "ctypes.call_function", "resource.setrlimit", "resource.prlimit", "sys.setprofile",
    "sys.settrace", "gc.get_referrers", "gc.get_referents", "gc.get_objects", "signal.pthread_kill", "mmap.__new__",
    "os.setresuid", "os.setgid", "os.mknod", "os.mkfifo", "sys.remote_exec",
})
# Modules that reach the operating system around the audited APIs.
FORBIDDEN_MODULES = frozenset({"ctypes", "_ctypes", "_posixshmem", "fcntl", "termios"})
PROCESS_MODULES = frozenset({"subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "pty"})
# Audit events that change the file system: allowed inside the working directory only. (event -> path args)
PATH_EVENTS = {"os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
               "os.chown": (0,), "os.symlink": (0, 1), "os.link": (0, 1), "os.truncate": (0,), "os.utime": (0,),
               "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (0, 1), "os.chdir": (0,)}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main() -> None:
    config = parse_config(sys.argv[1:])
    # SIGXCPU at the soft limit (hard = soft + 1, or the kernel sends SIGKILL at once and we could not tell
    # a CPU-limit kill from any other); SIGXFSZ back to its default (Python ignores it) so that an oversized
    # write ends the program as "file_limit" instead of an exception it could catch.
    resource.setrlimit(resource.RLIMIT_CPU, (int(config["cpu_seconds"]), int(config["cpu_seconds"]) + 1))
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    limit(resource.RLIMIT_FSIZE, config["max_file_bytes"])
    limit(resource.RLIMIT_AS, config["memory_bytes"])
    limit(resource.RLIMIT_CORE, 0)
    if config["max_processes"]:
        limit(resource.RLIMIT_NPROC, config["max_processes"])  # enforced for non-root users only
    cwd = os.path.realpath(os.getcwd())
    # The bootstrap itself stays readable so that tracebacks through it can show its lines.
    readable = tuple(os.path.realpath(p) for p in config["readable"]) + (cwd, os.path.realpath(__file__))
    fd_result = config["result_fd"]
    sys.argv = ["main.py"]
    guard = make_guard(cwd, readable, allow_processes=config["max_processes"] > 1)
    sys.addaudithook(guard)
    namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    try:
        with open("main.py", encoding="utf-8") as f:
            code = compile(f.read(), "main.py", "exec")
        exec(code, namespace)
        if config["entry"]:
            value = eval(config["entry"], namespace)
            os.write(fd_result, repr(value).encode("utf-8", "replace")[:config["max_result_bytes"]])
    except MemoryError:
        namespace.clear()  # free what the program held so that the report can be written
        sys.stderr.write("\nMemoryError: the program exceeded its memory limit\n")
        sys.stderr.flush()
        os._exit(EXIT_MEMORY)
    except SystemExit:
        raise
    except BaseException as e:
        import traceback

        # Show the program's frames only, not the bootstrap's.
        traceback.print_exception(type(e), e, e.__traceback__.tb_next if e.__traceback__ else None)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)


INT_KEYS = ("cpu_seconds", "memory_bytes", "max_file_bytes", "max_processes", "result_fd", "max_result_bytes")


def format_config(config: dict) -> list[str]:
    """The parent's side: KEY=VALUE arguments, then `--` and the readable roots (no json: importing it and
    the `re` it pulls in would double the start-up time of every sandboxed program)."""
    return [f"{k}={config[k]}" for k in INT_KEYS] + [f"entry={config['entry'] or ''}", "--", *config["readable"]]


def parse_config(argv: list[str]) -> dict:
    split = argv.index("--")
    config = dict(item.split("=", 1) for item in argv[:split])
    out = {k: int(config[k]) for k in INT_KEYS}
    out["entry"] = config["entry"] or None
    out["readable"] = argv[split + 1:]
    return out


def limit(kind: int, value) -> None:
    if value:
        resource.setrlimit(kind, (int(value), int(value)))


def make_guard(cwd: str, readable: tuple, allow_processes: bool):
    realpath, fspath, sep = os.path.realpath, os.fspath, os.sep
    process_events = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system", "os.spawn",
                                "subprocess.Popen", "os.kill", "os.killpg"})
    write = sys.stderr.write

    def inside(path, roots) -> bool:
        if isinstance(path, int):  # a file descriptor the process already holds
            return True
        path = realpath(fspath(path))
        return any(path == root or path.startswith(root + sep) for root in roots)

    def deny(what: str) -> None:
        try:
            write(f"\nSandboxViolation: {what} is not allowed in the sandbox\n")
            sys.stderr.flush()
        finally:
            os._exit(EXIT_FORBIDDEN)

    def guard(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if path is None:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
            if not inside(path, (cwd,) if writing else readable):
                deny(f"{'writing' if writing else 'reading'} {path!r}")
        elif event == "import":
            top = args[0].partition(".")[0]
            if top in FORBIDDEN_MODULES or (top in PROCESS_MODULES and not allow_processes):
                deny(f"importing {args[0]}")
        elif event in PATH_EVENTS:
            for i in PATH_EVENTS[event]:
                if i < len(args) and args[i] is not None and not inside(args[i], (cwd,)):
                    deny(f"{event} on {args[i]!r}")
        elif event in FORBIDDEN_EVENTS and not (allow_processes and event in process_events):
            deny(event)

    return guard


if __name__ == "__main__":
    main()
