"""Random, realistic small C functions with IO examples (the generated half of SLaDe's data).

    fns = generate(500, seed=0)                 # [GeneratedFunction]: .fn (a CFunction), .examples, .family
    fns[0].fn.source, fns[0].examples[0]        # the definition, {"a": [3, -1, 4], "n": 3}

Families (ExeBench's mix in miniature): integer arithmetic and branches, expression trees, array reductions and
in-place maps, two-array loops, floating-point polynomials and clamps, pointer swaps, structs read and updated
through pointers (some behind a typedef), typedef'd unsigned bit twiddling, libc calls (abs, sqrt, fabs,
strlen, toupper) and string loops. Every choice (names, operators, comparisons, constants, loop bounds) is drawn
from a seeded `random.Random`, so a seed gives the same functions everywhere. Division only ever by a non-zero
constant, so a reference never traps on its inputs; the harness compiles with -fwrapv, so overflow is defined.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from slm.eval.c_io import CFunction, Param

VERBS = ("calc", "count", "scan", "update", "apply", "find", "mix", "step", "eval", "reduce", "fold", "check")
NOUNS = ("score", "value", "items", "total", "range", "delta", "weight", "level", "limit", "state", "entry", "pair")
CMPS = ("<", "<=", ">", ">=", "==", "!=")
ARITH = ("+", "-", "*")
BITS = ("&", "|", "^")


@dataclass
class GeneratedFunction:
    fn: CFunction
    examples: list[dict]
    family: str


def _name(r: random.Random) -> str:
    return f"{r.choice(VERBS)}_{r.choice(NOUNS)}"


def _ints(r: random.Random, lo: int = -50, hi: int = 50) -> int:
    return r.randint(lo, hi)


def _array(r: random.Random, lo: int = -20, hi: int = 20) -> list[int]:
    return [r.randint(lo, hi) for _ in range(r.randint(1, 8))]


def _floats(r: random.Random, lo: float = -10.0, hi: float = 10.0) -> float:
    return round(r.uniform(lo, hi), 2)


def _word(r: random.Random) -> str:
    return "".join(r.choice("abcdexyzABCXYZ ") for _ in range(r.randint(0, 12)))


def _expr(r: random.Random, names: list[str], depth: int) -> str:
    """A random integer expression over `names` and small constants."""
    if depth == 0 or r.random() < 0.3:
        return r.choice(names) if r.random() < 0.7 else str(r.randint(1, 9))
    op = r.choice(ARITH + ("/", "%") if depth < 2 else ARITH)
    if op in ("/", "%"):  # only by a non-zero constant
        return f"({_expr(r, names, depth - 1)} {op} {r.randint(2, 9)})"
    return f"({_expr(r, names, depth - 1)} {op} {_expr(r, names, depth - 1)})"


# ------------------------------------------------------------------------------------------------ families
def arith_branch(r):
    a, b = r.sample(("a", "b", "x", "y"), 2)
    c1, c2 = r.randint(1, 20), r.randint(1, 20)
    body = [f"    if ({a} {r.choice(CMPS)} {b})", f"        return {a} {r.choice(ARITH)} {c1};"]
    if r.random() < 0.5:
        body += [f"    else if ({b} {r.choice(CMPS)} {r.randint(-10, 10)})", f"        return {b} {r.choice(ARITH)} {a};"]
    body += [f"    return {b} {r.choice(ARITH)} {c2};"]
    src = f"int {_name(r)}(int {a}, int {b})\n{{\n" + "\n".join(body) + "\n}\n"
    return src, [Param(a, "int"), Param(b, "int")], lambda: {a: _ints(r), b: _ints(r)}


def expression(r):
    names = r.sample(("x", "y", "z"), r.randint(2, 3))
    t = _expr(r, names, 2)
    lines = [f"    int t = {t};"]
    if r.random() < 0.5:
        lines.append(f"    t = t {r.choice(ARITH + BITS)} {_expr(r, names, 1)};")
    lines.append(f"    return t {r.choice(ARITH)} {r.randint(0, 9)};")
    params = ", ".join(f"int {n}" for n in names)
    src = f"int {_name(r)}({params})\n{{\n" + "\n".join(lines) + "\n}\n"
    return src, [Param(n, "int") for n in names], lambda: {n: _ints(r) for n in names}


def array_reduce(r):
    kind = r.choice(("sum", "count", "max", "min", "weighted"))
    cond = f"a[i] {r.choice(CMPS)} {r.randint(-10, 10)}"
    if kind == "sum":
        init, step = "0", f"if ({cond})\n            acc += a[i] {r.choice(ARITH)} {r.randint(1, 5)};"
    elif kind == "count":
        init, step = "0", f"if ({cond})\n            acc++;"
    elif kind == "max":
        init, step = "a[0]", "if (a[i] > acc)\n            acc = a[i];"
    elif kind == "min":
        init, step = "a[0]", "if (a[i] < acc)\n            acc = a[i];"
    else:
        init, step = "0", f"acc += a[i] * (i {r.choice(ARITH)} {r.randint(1, 4)});"
    start = "1" if kind in ("max", "min") else "0"
    src = (f"int {_name(r)}(int *a, int n)\n{{\n    int acc = {init};\n    for (int i = {start}; i < n; i++) {{\n"
           f"        {step}\n    }}\n    return acc;\n}}\n")

    def example():
        a = _array(r)
        return {"a": a, "n": len(a)}
    return src, [Param("a", "int *"), Param("n", "int")], example


def array_map(r):
    op, c = r.choice(ARITH + BITS), r.randint(1, 9)
    body = f"a[i] = a[i] {op} {c};"
    if r.random() < 0.5:  # a conditional update, sometimes with an else branch
        body = f"if (a[i] {r.choice(CMPS)} {r.randint(-5, 5)})\n            {body}"
        if r.random() < 0.5:
            body += f"\n        else\n            a[i] = {r.randint(-3, 3)};"
    src = (f"void {_name(r)}(int *a, int n)\n{{\n    for (int i = 0; i < n; i++) {{\n        {body}\n    }}\n}}\n")

    def example():
        a = _array(r)
        return {"a": a, "n": len(a)}
    return src, [Param("a", "int *"), Param("n", "int")], example


def two_arrays(r):
    kind = r.choice(("dot", "diff", "copy"))
    if kind == "dot":
        ret, body, tail = "int", f"acc += a[i] * b[i] {r.choice(('+', '-'))} {r.randint(0, 3)};", "return acc;"
    elif kind == "diff":
        ret, body, tail = "int", f"if (a[i] {r.choice(CMPS)} b[i])\n            acc++;", "return acc;"
    else:
        ret, body, tail = "void", f"b[i] = a[i] {r.choice(ARITH)} {r.randint(1, 9)};", ""
    head = "    int acc = 0;\n" if ret == "int" else ""
    src = (f"{ret} {_name(r)}(int *a, int *b, int n)\n{{\n{head}    for (int i = 0; i < n; i++) {{\n"
           f"        {body}\n    }}\n" + (f"    {tail}\n" if tail else "") + "}\n")

    def example():
        a = _array(r)
        return {"a": a, "b": [r.randint(-20, 20) for _ in a], "n": len(a)}
    return src, [Param("a", "int *"), Param("b", "int *"), Param("n", "int")], example


def float_poly(r):
    t = r.choice(("double", "float"))
    cs = [round(r.uniform(-5, 5), 1) for _ in range(r.randint(2, 4))]
    horner = f"{cs[-1]}"
    for c in reversed(cs[:-1]):
        horner = f"{c} + x * ({horner})"
    src = f"{t} {_name(r)}({t} x)\n{{\n    return {horner};\n}}\n"
    return src, [Param("x", t)], lambda: {"x": _floats(r)}


def float_mean(r):
    t = r.choice(("double", "float"))
    cond = r.random() < 0.5
    step = f"if (a[i] {r.choice(('<', '>'))} {r.randint(-5, 5)}.0)\n            s += a[i];" if cond else "s += a[i];"
    src = (f"{t} {_name(r)}({t} *a, int n)\n{{\n    {t} s = 0;\n    for (int i = 0; i < n; i++) {{\n        {step}\n"
           f"    }}\n    return s / n;\n}}\n")

    def example():
        a = [_floats(r) for _ in range(r.randint(1, 6))]
        return {"a": a, "n": len(a)}
    return src, [Param("a", f"{t} *"), Param("n", "int")], example


def clamp(r):
    lo, hi = sorted((r.randint(-10, 0), r.randint(1, 10)))
    src = (f"double {_name(r)}(double x)\n{{\n    if (x < {lo}.0)\n        return {lo}.0;\n    if (x > {hi}.0)\n"
           f"        return {hi}.0;\n    return x {r.choice(('*', '+'))} {round(r.uniform(0.5, 3), 1)};\n}}\n")
    return src, [Param("x", "double")], lambda: {"x": _floats(r, -15, 15)}


def swap(r):
    cmp = r.choice(CMPS[:4])
    extra = f"\n        *p = *p {r.choice(ARITH)} {r.randint(1, 5)};" if r.random() < 0.5 else ""
    src = (f"void {_name(r)}(int *p, int *q)\n{{\n    if (*p {cmp} *q) {{\n        int t = *p;\n        *p = *q;\n"
           f"        *q = t;{extra}\n    }}\n}}\n")
    return src, [Param("p", "int *"), Param("q", "int *")], lambda: {"p": [_ints(r)], "q": [_ints(r)]}


STRUCT_TAGS = ("point", "item", "node", "account", "cell", "rect")
FIELD_NAMES = ("x", "y", "w", "h", "count", "total", "id", "size")


def struct_func(r):
    tag = r.choice(STRUCT_TAGS)
    fields = r.sample(FIELD_NAMES, r.randint(2, 4))
    typedef = r.random() < 0.4
    type_name = f"{tag}_t" if typedef else f"struct {tag}"
    deps = f"struct {tag} {{\n" + "".join(f"    int {f};\n" for f in fields) + "};\n"
    if typedef:
        deps += f"typedef struct {tag} {tag}_t;\n"
    f1, f2 = r.sample(fields, 2)
    if r.random() < 0.5:
        ret, body = "int", f"    return s->{f1} {r.choice(ARITH)} s->{f2} {r.choice(ARITH)} k;\n"
    else:
        ret = "void"
        body = (f"    s->{f1} = s->{f1} {r.choice(ARITH)} k;\n    if (s->{f2} {r.choice(CMPS)} s->{f1})\n"
                f"        s->{f2} = {r.randint(-5, 5)};\n")
    src = f"{ret} {_name(r)}({type_name} *s, int k)\n{{\n{body}}}\n"
    params = [Param("s", f"{type_name} *"), Param("k", "int")]
    return (src, params, lambda: {"s": {f: _ints(r, -20, 20) for f in fields}, "k": _ints(r, -9, 9)},
            deps, {f"struct {tag}": [("int", f) for f in fields]}, {f"{tag}_t": f"struct {tag}"} if typedef else {})


def bit_twiddle(r):
    shifts = (r.randint(1, 7), r.randint(1, 7))
    src = (f"u32 {_name(r)}(u32 x)\n{{\n    u32 y = (x << {shifts[0]}) {r.choice(BITS)} (x >> {shifts[1]});\n"
           f"    return y {r.choice(BITS)} {r.randint(1, 255)}u;\n}}\n")
    return (src, [Param("x", "u32")], lambda: {"x": r.randint(0, 2**32 - 1)}, "typedef unsigned int u32;\n", {},
            {"u32": "unsigned int"})


def libc_calls(r):
    kind = r.choice(("abs", "sqrt", "fabs"))
    if kind == "abs":
        src = (f"int {_name(r)}(int *a, int n)\n{{\n    int s = 0;\n    for (int i = 0; i < n; i++)\n"
               f"        s += abs(a[i] - {r.randint(-5, 5)});\n    return s;\n}}\n")

        def example():
            a = _array(r)
            return {"a": a, "n": len(a)}
        return src, [Param("a", "int *"), Param("n", "int")], example
    if kind == "sqrt":
        src = f"double {_name(r)}(double x, double y)\n{{\n    return sqrt(x * x + y * y) {r.choice(ARITH)} {r.randint(1, 4)}.0;\n}}\n"
        return src, [Param("x", "double"), Param("y", "double")], lambda: {"x": _floats(r), "y": _floats(r)}
    src = (f"double {_name(r)}(double x, double y)\n{{\n    if (fabs(x - y) < {round(r.uniform(0.5, 4), 1)})\n"
           f"        return 0.0;\n    return x {r.choice(ARITH)} y;\n}}\n")
    return src, [Param("x", "double"), Param("y", "double")], lambda: {"x": _floats(r), "y": _floats(r)}


def strings(r):
    kind = r.choice(("count", "upper", "length", "replace"))
    ch, other = r.sample("abcxyz ", 2)
    if kind == "count":
        src = (f"int {_name(r)}(const char *s)\n{{\n    int c = 0;\n    for (; *s; s++)\n        if (*s == '{ch}')\n"
               f"            c++;\n    return c;\n}}\n")
        return src, [Param("s", "const char *")], lambda: {"s": _word(r)}
    if kind == "length":
        src = f"int {_name(r)}(const char *s)\n{{\n    return (int)strlen(s) {r.choice(ARITH)} {r.randint(1, 9)};\n}}\n"
        return src, [Param("s", "const char *")], lambda: {"s": _word(r)}
    if kind == "upper":
        src = (f"void {_name(r)}(char *s)\n{{\n    for (int i = 0; s[i]; i++)\n        s[i] = toupper(s[i]);\n}}\n")
        return src, [Param("s", "char *")], lambda: {"s": _word(r)}
    src = (f"int {_name(r)}(char *s)\n{{\n    int n = 0;\n    for (int i = 0; s[i] != '\\0'; i++) {{\n"
           f"        if (s[i] == '{ch}') {{\n            s[i] = '{other}';\n            n++;\n        }}\n    }}\n"
           f"    return n;\n}}\n")
    return src, [Param("s", "char *")], lambda: {"s": _word(r)}


def digit_loop(r):
    base = r.choice((2, 8, 10, 16))
    op = r.choice(("+=", "^=", "+= 1 +"))
    src = (f"int {_name(r)}(int x)\n{{\n    int c = 0;\n    if (x < 0)\n        x = -x;\n    while (x > 0) {{\n"
           f"        c {op} x % {base};\n        x /= {base};\n    }}\n    return c;\n}}\n")
    return src, [Param("x", "int")], lambda: {"x": r.randint(-100000, 100000)}


FAMILIES = {"arith_branch": arith_branch, "expression": expression, "array_reduce": array_reduce,
            "array_map": array_map, "two_arrays": two_arrays, "float_poly": float_poly, "float_mean": float_mean,
            "clamp": clamp, "swap": swap, "struct": struct_func, "bit_twiddle": bit_twiddle, "libc": libc_calls,
            "strings": strings, "digit_loop": digit_loop}


def generate_one(r: random.Random, family: str, n_examples: int = 5) -> GeneratedFunction:
    made = FAMILIES[family](r)  # (source, params, example maker[, deps, structs, typedefs])
    src, params, example = made[:3]
    deps, structs, typedefs = made[3:] if len(made) == 6 else ("", {}, {})
    name = src.split("(", 1)[0].split()[-1]
    ret = src.split(name, 1)[0].strip()
    fn = CFunction(name, ret, params, src, deps=deps, structs=structs, typedefs=typedefs)
    return GeneratedFunction(fn, [example() for _ in range(n_examples)], family)


def generate(count: int, seed: int = 0, n_examples: int = 5, families: list[str] | None = None
             ) -> list[GeneratedFunction]:
    """`count` distinct functions (by source text), families drawn uniformly, reproducible from `seed`."""
    from slm.errors import ConfigError

    names = list(families or FAMILIES)
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise ConfigError(f"unknown function families {unknown}; choose from {', '.join(FAMILIES)}")
    r = random.Random(seed)
    out, seen = [], set()
    for _ in range(count * 20):
        if len(out) == count:
            break
        g = generate_one(r, r.choice(names), n_examples)
        if g.fn.source not in seen:
            seen.add(g.fn.source)
            out.append(g)
    return out
