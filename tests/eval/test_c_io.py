"""The C IO harness: the reference passes its own IO, a one-character mutant does not, each failure is named."""
import pytest

from slm.errors import SlmError
from slm.eval.c_io import CFunction, IOHarness, Param, driver_source

COUNT = """int count_below(int *a, int n, int t) {
    int c = 0;
    for (int i = 0; i < n; i++)
        if (a[i] < t)
            c++;
    return c;
}
"""
EXAMPLES = [{"a": [3, 1, 4, 1, 5], "n": 5, "t": 4}, {"a": [9, 2, 6], "n": 3, "t": 6}, {"a": [7], "n": 1, "t": 0}]


def count_fn(source=COUNT):
    return CFunction("count_below", "int", [Param("a", "int *"), Param("n", "int"), Param("t", "int")], source)


@pytest.fixture(scope="module")
def harness():
    return IOHarness(count_fn(), EXAMPLES)


def test_original_passes_and_the_less_equal_mutant_fails(harness):
    assert harness.check(COUNT).status == "pass"
    mutant = COUNT.replace("a[i] < t", "a[i] <= t")
    assert mutant != COUNT
    result = harness.check(mutant)
    assert result.status == "wrong_output", result
    assert "return" in result.detail  # the differing line is named


def test_each_failure_kind_is_named(harness):
    assert harness.check("int count_below(int *a, int n, int t) { return q; }").status == "compile_error"
    assert harness.check("int count_below(int *a, int n, int t) { for (;;) {} }").status == "timeout"
    crash = "int count_below(int *a, int n, int t) { int *p = 0; return *p + n; }"
    assert harness.check(crash).status == "runtime_error"
    fork = "#include <unistd.h>\nint count_below(int *a, int n, int t) { fork(); return 0; }"
    assert harness.check(fork).status == "runtime_error"


def test_outputs_cover_written_arrays_strings_and_struct_fields():
    deps = "struct acc { int total; double mean; };"
    source = """void fill(int *out, int n, char *s, struct acc *r) {
    for (int i = 0; i < n; i++) { out[i] = i * i; r->total += i; }
    r->mean = r->total / (double) n;
    s[0] = 'X';
}
"""
    fn = CFunction("fill", "void", [Param("out", "int *"), Param("n", "int"), Param("s", "char *"),
                                    Param("r", "struct acc *")], source, deps=deps,
                   structs={"struct acc": [("int", "total"), ("double", "mean")]})
    harness = IOHarness(fn, [{"out": [0, 0, 0], "n": 3, "s": "abc", "r": {"total": 1, "mean": 0.0}}])
    assert harness.expected.splitlines() == ["0 out[0] 0", "0 out[1] 1", "0 out[2] 4", "0 s Xbc", "0 r.total 4",
                                             "0 r.mean 1.33333333333"]
    assert harness.check(source, declarations=deps).status == "pass"
    # Without the struct's declaration the candidate's unit does not compile.
    assert harness.check(source).status == "compile_error"
    wrong_field = source.replace("s[0] = 'X'", "s[1] = 'X'")
    assert harness.check(wrong_field, declarations=deps).status == "wrong_output"


def test_typedefs_resolve_for_the_driver():
    fn = CFunction("twice", "u32", [Param("x", "u32")], "u32 twice(u32 x) { return 2 * x; }",
                   deps="typedef unsigned int u32;", typedefs={"u32": "unsigned int"})
    harness = IOHarness(fn, [{"x": 4000000000}])
    assert harness.expected == "0 return 3705032704\n"  # 8e9 mod 2^32, printed unsigned
    assert harness.check("unsigned twice(unsigned x) { return x + x; }").passed


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(SlmError, match="no value for parameter 't'"):
        driver_source(count_fn(), [{"a": [1], "n": 1}])
    with pytest.raises(SlmError, match="does not run on its IO examples"):
        IOHarness(count_fn("int count_below(int *a, int n, int t) { for (;;) {} }"), EXAMPLES[:1], timeout=1)
    with pytest.raises(SlmError, match="no IO examples"):
        IOHarness(count_fn(), [])
