"""Real C functions: definitions found in library-style C, kept only when they compile alone, run on generated
inputs without undefined behaviour and vary with them; the embedded harvest names its sources and licences."""
import random

from slm.eval.c_io import IOHarness
from slm.recipes.slade import real

LIBRARY_C = r'''
#include <stdint.h>
#define FORCE_INLINE static inline
#define PRIME 0x9E3779B1U
#define ROTL(x, r) (((x) << (r)) | ((x) >> (32 - (r))))
typedef uint32_t u32;
typedef u32 word_t;
/* a comment with a brace { that must not count */
FORCE_INLINE word_t mix_round(word_t acc, word_t input)
{
    acc += input * PRIME;
    return ROTL(acc, 13);
}
#if 0
int disabled(int x) { return x; }
#endif
static int count_spaces(const char *s) { int n = 0; while (*s) n += *s++ == ' '; return n; }
void scale(int *values, int len, int k) { for (int i = 0; i < len; i++) values[i] *= k; }
int sum_words(const u32 *w, int n) { int t = 0; for (int i = 0; i < n; i++) t += (int)w[i]; return t; }
static int apply(int (*f)(int), int x) { return f(x); }
int logf_like(const char *fmt, ...) { return 0; }
struct point { int x, y; };
int px(struct point *p) { return p->x; }
int past_the_end(const int *a, int n) { return a[n + 100000]; }
int constant(int x) { return 7; }
void nothing_out(const int *a, int n) { (void)a; (void)n; }
int calls_other(int x) { return (int)mix_round((word_t)x, 1u); }
int calls_missing(int x) { return not_in_this_package(x); }
int recursive(int x) { return x > 0 ? recursive(x - 1) : 0; }
const char *s = "a string with } a brace";
'''


def test_candidates_parse_library_style_definitions():
    found = {fn.name: fn for _, fn in real.candidates({"lib.c": LIBRARY_C})}
    assert {"mix_round", "count_spaces", "scale", "sum_words", "past_the_end", "constant", "calls_other",
            "calls_missing"} <= set(found)
    # no function pointer, varargs, struct pointer, void-without-outputs, recursion or #if 0 definitions
    assert not {"apply", "logf_like", "px", "nothing_out", "disabled", "recursive"} & set(found)
    mix = found["mix_round"]
    assert mix.return_type == "word_t" and mix.source.startswith("word_t mix_round(word_t acc, word_t input)")
    assert "static" not in mix.source and "FORCE_INLINE" not in mix.source
    # the typedef chain in dependency order, and the macros it uses
    assert mix.deps.index("typedef uint32_t u32;") < mix.deps.index("typedef u32 word_t;")
    assert "#define PRIME 0x9E3779B1U" in mix.deps and "#define ROTL(x, r)" in mix.deps
    assert mix.resolve("word_t") == "uint32_t"
    # a package function it calls comes along as a static definition
    assert "static word_t mix_round(word_t acc, word_t input)" in found["calls_other"].deps


def test_examples_tie_length_parameters_to_the_arrays():
    found = {fn.name: fn for _, fn in real.candidates({"lib.c": LIBRARY_C})}
    for example in real.make_examples(found["scale"], random.Random(0), 4):
        assert example["len"] == len(example["values"]) and 8 <= example["len"] <= 24
    example = real.make_examples(found["count_spaces"], random.Random(0), 1)[0]
    assert isinstance(example["s"], str)


def test_validation_keeps_real_functions_and_rejects_the_rest():
    found = {fn.name: fn for _, fn in real.candidates({"lib.c": LIBRARY_C})}
    r = random.Random(1)
    for name in ("mix_round", "count_spaces", "scale", "sum_words", "calls_other"):
        fn = found[name]
        examples = real.make_examples(fn, r, 4)
        assert real.validate(fn, examples) is None, name
        assert IOHarness(fn, examples).check(fn.source, fn.deps).passed
    assert real.validate(found["constant"], real.make_examples(found["constant"], r, 4)) == \
        "the same outputs on every input"
    assert real.validate(found["calls_missing"], real.make_examples(found["calls_missing"], r, 4)) == \
        "does not compile alone"
    assert real.validate(found["past_the_end"], real.make_examples(found["past_the_end"], r, 4)) is not None


def test_the_embedded_harvest_names_sources_and_licences_and_loads():
    import json

    records = json.loads(real.REAL_FUNCTIONS.read_text())
    assert len(records["functions"]) >= 50
    for rec in records["functions"]:
        assert rec["package"] in real.SOURCES and rec["license"] == real.SOURCES[rec["package"]][1]
        assert rec["path"].endswith((".c", ".h"))
    loaded = real.load_real(5, seed=0)
    assert len(loaded) == 5 and all(g.family.startswith("real/") for g in loaded)
    assert [g.fn.name for g in loaded] == [g.fn.name for g in real.load_real(5, seed=0)]
    g = loaded[0]
    assert IOHarness(g.fn, g.examples).check(g.fn.source, g.fn.deps).passed
