"""Per-function assembly at -O0 and -O3: one function's body cut out of a file of several, directives dropped."""
import pytest

from slm.eval.c_io import CFunction, Param
from slm.recipes.slade.assembly import available_isas, compile_functions, extract_function

COUNT = CFunction("count_below", "int", [Param("a", "int *"), Param("n", "int"), Param("t", "int")],
                  "int count_below(int *a, int n, int t) {\n  int c = 0;\n  for (int i = 0; i < n; i++)\n"
                  "    if (a[i] < t) c++;\n  return c;\n}\n")
SCALE = CFunction("scale", "double", [Param("x", "double")], "double scale(double x) { return x * 2.5 + 1.25; }\n")
ISAS = [isa for isa, why in available_isas().items() if why is None]


@pytest.mark.parametrize("isa", ["x86_64", "aarch64"])
def test_o0_and_o3_bodies_per_function(isa):
    if isa not in ISAS:
        pytest.skip(available_isas()[isa])
    o0, o3 = compile_functions([COUNT], isa, "O0")[0], compile_functions([COUNT], isa, "O3")[0]
    for body in (o0, o3):
        lines = body.splitlines()
        assert lines[0] == "count_below:"
        assert "ret" in lines and "count_below:" not in lines[1:]
        # directives are gone, local labels stay
        assert not [line for line in lines if line.startswith(".") and not line.endswith(":")]
        assert any(line.startswith(".L") and line.endswith(":") for line in lines)
    assert o0 != o3
    assert len(o3.splitlines()) != len(o0.splitlines())
    if isa == "x86_64":
        assert "%rbp" in o0 and "%rbp" not in o3  # -O0 keeps a frame pointer, -O3 does not


def test_one_function_cut_out_of_a_file_of_several_with_its_literal_pool():
    both = compile_functions([COUNT, SCALE], "x86_64", "O0")
    assert both[0].startswith("count_below:") and "scale" not in both[0]
    assert both[1].startswith("scale:") and "count_below" not in both[1]
    # the double constants the function loads come with it (2.5 = 0x4004000000000000: high word 1074003968)
    assert ".LC0:" in both[1] and ".long 1074003968" in both[1]


def test_extract_function_returns_none_for_a_missing_name_and_skips_markers():
    asm = "\t.text\n\t.globl\tf\n\t.type\tf, @function\nf:\n.LFB0:\n\t.cfi_startproc\n\tmovl\t$1, %eax\n\tret\n" \
          "\t.cfi_endproc\n.LFE0:\n\t.size\tf, .-f\n"
    assert extract_function(asm, "f") == "f:\nmovl $1, %eax\nret"
    assert extract_function(asm, "g") is None


def test_a_function_that_does_not_compile_gives_none_and_the_rest_still_compile():
    broken = CFunction("broken", "int", [], "int broken(void) { return nope; }\n")
    out = compile_functions([COUNT, broken, SCALE], "x86_64", "O3")
    assert out[1] is None and out[0].startswith("count_below:") and out[2].startswith("scale:")
