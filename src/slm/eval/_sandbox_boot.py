"""The first code a sandboxed child runs (`python -I -S -B _sandbox_boot.py KEY=VALUE... -- READABLE...`), before the model's code.

It sets the resource limits, installs an audit hook that ends the process on anything the sandbox forbids
(starting processes, sockets, writes outside the working directory, reads outside the standard library and the
working directory, changing limits), then runs main.py as __main__. It imports only the standard library: the
child runs with -S, so nothing from site-packages (slm included) is importable.

With `--native` it is the C sandbox's launcher instead (native_main below): the same limits, then Landlock and
a seccomp filter, then exec of the compiled program or the compiler.

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


# ---- native programs (the C sandbox): `_sandbox_boot.py --native KEY=VALUE... -- PROGRAM ARGS...` ----
# The same limits as above, then, because a compiled program has no audit hook: Landlock (the kernel's
# unprivileged file-system sandbox) confines reads and executions to `read` roots and every change to the working
# directory, and denies TCP and signals to processes outside; a seccomp filter (confine=1) kills the program
# (SIGSYS, reported "forbidden") on process creation, sockets, ptrace and changing limits. Then exec.
NATIVE_KEYS = ("cpu_seconds", "memory_bytes", "max_file_bytes", "max_processes", "confine")
LANDLOCK_READ = 1 | 4 | 8  # execute, read file, read directory
LANDLOCK_FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # rights a rule on a file (not a directory) may hold
# Denied system calls by machine: fork/vfork/clone/clone3, socket family, kill/tkill, ptrace, execveat,
# setrlimit, unshare/setns/mount, bpf, perf_event_open, userfaultfd, io_uring_setup, keyctl; then prlimit64, which
# libc calls at start-up to read limits, allowed only without a new limit (root could raise its hard limits).
SECCOMP_DENY = {
    "x86_64": (0xC000003E, (57, 58, 56, 435, 41, 53, 42, 49, 50, 43, 288, 44, 62, 200, 101, 322, 160,
                            272, 308, 165, 321, 298, 323, 425, 250), 302),
    "aarch64": (0xC00000B7, (220, 435, 198, 199, 203, 200, 201, 202, 242, 206, 129, 130, 117, 281, 164,
                             97, 268, 40, 280, 241, 282, 425, 219), 261),
}


def native_main(argv: list[str]) -> None:
    split = argv.index("--")
    config = dict(item.split("=", 1) for item in argv[:split])
    program = argv[split + 1:]
    resource.setrlimit(resource.RLIMIT_CPU, (int(config["cpu_seconds"]), int(config["cpu_seconds"]) + 1))
    limit(resource.RLIMIT_FSIZE, int(config["max_file_bytes"]))
    limit(resource.RLIMIT_AS, int(config["memory_bytes"]))
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_NPROC, int(config["max_processes"]))  # binds non-root users; seccomp binds root
    # Python ignores SIGXFSZ and SIGPIPE and ignored signals survive exec: give the program the defaults back.
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: required by both filters for non-root users
        deny("prctl(PR_SET_NO_NEW_PRIVS) failed; refusing to run unconfined")
    landlock(libc, os.path.realpath(os.getcwd()), [r for r in config.get("read", "").split(":") if r])
    if config["confine"] == "1":
        seccomp(libc)
    os.execv(program[0], program)


def deny(why: str) -> None:
    sys.stderr.write(f"\nSandboxViolation: {why}\n")
    sys.stderr.flush()
    os._exit(EXIT_FORBIDDEN)


def landlock_abi(libc) -> int:
    """The kernel's Landlock ABI version, 0 where Landlock is missing or disabled."""
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return max(0, abi)


def landlock(libc, workdir: str, read_roots: list[str]) -> None:
    import ctypes

    abi = landlock_abi(libc)
    if abi == 0:
        return  # the parent knows (native_confinement()) and reports it; limits and seccomp still apply
    handled = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | \
        (1 << 15 if abi >= 5 else 0)

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    # net (ABI 4): TCP bind and connect handled with no rule, so denied; scoped (ABI 6): abstract UNIX
    # sockets and signals to processes outside this domain.
    attr = Ruleset(handled, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(444, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        deny(f"landlock_create_ruleset failed (errno {ctypes.get_errno()})")
    roots = [(root, LANDLOCK_READ | (2 if root == "/dev/null" else 0)) for root in read_roots]  # 2: write
    for path, rights in [(workdir, handled)] + roots:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a root this machine lacks (/lib64 on some systems)
        if not os.path.isdir(path):
            rights &= LANDLOCK_FILE_RIGHTS
        rule = PathBeneath(rights & handled, fd)
        if libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0) != 0:
            deny(f"landlock_add_rule({path}) failed (errno {ctypes.get_errno()})")
        os.close(fd)
    if libc.syscall(446, ruleset, 0) != 0:
        deny(f"landlock_restrict_self failed (errno {ctypes.get_errno()})")
    os.close(ruleset)


def seccomp(libc) -> None:
    import ctypes

    machine = os.uname().machine  # not `platform`: after Landlock only the library roots are readable
    if machine not in SECCOMP_DENY:
        deny(f"no seccomp filter for machine {machine}; refusing to run unconfined")
    arch, numbers, prlimit = SECCOMP_DENY[machine]
    kill, allow = 0x80000000, 0x7FFF0000  # SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ALLOW
    # (code, jump if true, jump if false, k): 0x20 load word at k of seccomp_data (0 nr, 4 arch, 16 + 8i arg i),
    # 0x15 jump if equal, 0x35 jump if >=, 0x06 return k; jumps count instructions after the next one.
    code = [(0x20, 0, 0, 4), (0x15, 1, 0, arch), (0x06, 0, 0, kill), (0x20, 0, 0, 0)]  # arch check; load nr
    if machine == "x86_64":
        code += [(0x35, 0, 1, 0x40000000), (0x06, 0, 0, kill)]  # x32 system calls
    for nr in numbers:
        code += [(0x15, 0, 1, nr), (0x06, 0, 0, kill)]
    code += [(0x15, 0, 5, prlimit), (0x20, 0, 0, 32), (0x15, 0, 2, 0), (0x20, 0, 0, 36), (0x15, 1, 0, 0),
             (0x06, 0, 0, kill)]  # prlimit64's third argument (the new limit) must be NULL
    code.append((0x06, 0, 0, allow))

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    table = (Instruction * len(code))(*[Instruction(*row) for row in code])
    program = Program(len(code), table)
    if libc.prctl(22, 2, ctypes.byref(program), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        deny(f"installing the seccomp filter failed (errno {ctypes.get_errno()})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--native"]:
        native_main(sys.argv[2:])
    else:
        main()
