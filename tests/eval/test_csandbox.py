"""Hostile C programs are contained by the C sandbox, each reported as its own failure, and it keeps going."""
import os

import pytest

from slm.eval.csandbox import native_confinement, run_c

needs_landlock = pytest.mark.skipif(native_confinement()["landlock_abi"] == 0,
                                    reason="this kernel has no Landlock (Linux 5.13+), so writes are not confined")
ESCAPE = "/tmp/slm-csandbox-escape.txt"
VICTIM = "/tmp/slm-csandbox-victim.txt"
HEADERS = "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n" \
          "#include <signal.h>\n#include <sys/socket.h>\n#include <netinet/in.h>\n#include <sys/resource.h>\n"

HOSTILE = {
    # name: (main's body, expected status, limits)
    "infinite loop": ("for (;;) {}", "timeout", dict(timeout=1.5)),
    "cpu burner": ("volatile long x = 0; for (;;) x++;", "cpu_limit", dict(timeout=20, cpu_seconds=1)),
    "fork bomb": ("for (;;) fork(); return 0;", "forbidden", {}),
    "system()": ('return system("echo hi");', "forbidden", {}),
    "socket": ("int s = socket(AF_INET, SOCK_STREAM, 0); printf(\"escaped %d\\n\", s); return 0;", "forbidden",
               {}),
    "kill the parent": ("kill(getppid(), SIGKILL); puts(\"escaped\"); return 0;", "forbidden", {}),
    "raise own limits": ("struct rlimit r = {RLIM_INFINITY, RLIM_INFINITY}; setrlimit(RLIMIT_AS, &r);"
                         " puts(\"escaped\"); return 0;", "forbidden", {}),
    "huge output": ("for (;;) puts(\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\");", "output_limit",
                    dict(max_output_bytes=100_000)),
    "huge file": ("FILE *f = fopen(\"big.bin\", \"wb\"); static char b[1 << 20];"
                  " for (int i = 0; i < 64; i++) fwrite(b, 1, sizeof b, f); fclose(f); return 0;", "file_limit",
                  dict(max_file_bytes=1 << 20)),
    "crash": ("int *p = 0; return *p;", "killed", {}),
    "exit code": ("return 3;", "error", {}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_contained_and_named(name):
    body, expected, limits = HOSTILE[name]
    result = run_c(HEADERS + f"int main(void) {{ {body} }}\n", **{"timeout": 10, **limits})
    assert result.status == expected, (result.status, result.stderr[-500:])
    assert "escaped" not in result.stdout
    after = run_c('#include <stdio.h>\nint main(void) { printf("%d\\n", 6 * 7); return 0; }')
    assert (after.status, after.stdout) == ("ok", "42\n")


def test_memory_bomb_gets_no_more_than_its_limit():
    # malloc fails at the address-space limit: the program counts the MiB it could touch, then stops.
    code = HEADERS + ("int main(void) { int n = 0; char *p; while ((p = malloc(1 << 20))) { memset(p, 1, 1 << 20);"
                      " n++; } printf(\"%d\\n\", n); return 0; }\n")
    result = run_c(code, memory_mb=128, timeout=20)
    assert result.status == "ok", result.stderr
    assert 0 < int(result.stdout) < 128
    # ...and one that ignores the failed malloc crashes instead of taking the machine's memory.
    careless = HEADERS + "int main(void) { for (;;) memset(malloc(64 << 20), 1, 64 << 20); }\n"
    assert run_c(careless, memory_mb=128, timeout=20).status == "killed"


@needs_landlock
def test_writes_outside_the_scratch_directory_are_refused_inside_allowed():
    with open(VICTIM, "w") as f:
        f.write("keep me")
    try:
        code = HEADERS + f"""int main(void) {{
            FILE *out = fopen("{ESCAPE}", "w"); if (out) {{ fputs("pwned", out); fclose(out); puts("escaped"); }}
            if (remove("{VICTIM}") == 0) puts("escaped");
            FILE *in = fopen("mine.txt", "w"); if (!in) return 4; fputs("ok", in); fclose(in);
            in = fopen("mine.txt", "r"); char buf[8] = {{0}}; fread(buf, 1, 2, in); puts(buf); return 0; }}\n"""
        result = run_c(code)
        assert result.status == "ok", result.stderr
        assert result.stdout == "ok\n"
        assert not os.path.exists(ESCAPE)
        assert open(VICTIM).read() == "keep me"
    finally:
        os.remove(VICTIM)


@needs_landlock
def test_reads_outside_the_library_roots_are_refused():
    code = HEADERS + 'int main(void) { FILE *f = fopen("/etc/passwd", "r"); puts(f ? "escaped" : "denied"); }\n'
    result = run_c(code)
    assert (result.status, result.stdout) == ("ok", "denied\n")


def test_compile_error_is_reported_with_its_diagnostic():
    result = run_c("int main(void) { return undefined_name; }\n")
    assert result.status == "compile_error"
    assert "undefined_name" in result.stderr


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("SLM_TEST_SECRET", "hunter2")
    code = HEADERS + 'int main(void) { const char *s = getenv("SLM_TEST_SECRET"); puts(s ? s : "none"); }\n'
    assert run_c(code).stdout == "none\n"
