"""IO accuracy for C functions: link a candidate definition with a generated driver that calls it on the IO
examples, run it in the C sandbox, and compare what it printed with what the reference printed.

    fn = CFunction(name="count_below", return_type="int", params=[Param("a", "int *"), Param("n", "int"),
                   Param("t", "int")], source=reference_c)
    harness = IOHarness(fn, [{"a": [3, 1, 4], "n": 3, "t": 4}, ...])   # runs the reference once
    harness.check(candidate_c).status                                 # "pass", "wrong_output", ...

This is ExeBench's judgement (its Wrapper + diff_io) without C++: the driver is plain C in its own translation
unit with the reference's declarations (`CFunction.deps`) and the prototype; the candidate is compiled in a
second unit with the standard headers plus whatever `declarations` the caller gives (the reference's own, types
inferred from the candidate, or nothing), so a candidate may declare its own types without clashing with the
driver's. Outputs are the return value and every pointed-to argument after the call (arrays, strings, struct
fields), one line per item; a candidate passes when all lines equal the reference's.

Argument kinds (after typedefs in `CFunction.typedefs` are resolved): integer and floating scalars; `T *` of a
scalar T (an array: the example gives a list, its length is the array's); `char *` / `const char *` (a
string, in a zero-filled buffer with `STRING_SLACK` spare bytes); `struct S *` (the example gives a dict of
field values; `CFunction.structs` lists the fields). Return types: a scalar or void.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from slm.errors import SlmError
from slm.eval.csandbox import compile_c, run_binary
from slm.eval.sandbox import scratch_directory

IOStatus = Literal["pass", "wrong_output", "compile_error", "runtime_error", "timeout"]
CANDIDATE_HEADERS = ("stdio.h", "stdlib.h", "string.h", "math.h", "ctype.h", "stdint.h", "stdbool.h", "limits.h")
STRING_SLACK = 64
INTEGER_TYPES = {"char", "signed char", "unsigned char", "short", "unsigned short", "int", "unsigned int",
                 "unsigned", "long", "unsigned long", "long long", "unsigned long long", "bool", "_Bool",
                 "size_t", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t", "int64_t",
                 "uint64_t"}
FLOAT_FORMATS = {"float": "%.6g", "double": "%.12g"}


@dataclass
class Param:
    name: str
    ctype: str  # as written in the prototype: "int", "const char *", "struct point *", "vec_t *"


@dataclass
class CFunction:
    name: str
    return_type: str
    params: list[Param]
    source: str  # the reference definition
    deps: str = ""  # declarations the signature and body need (structs, typedefs), without #includes
    structs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # "struct S" -> [(ctype, field)]
    typedefs: dict[str, str] = field(default_factory=dict)  # "vec_t" -> "struct vec", "u32" -> "unsigned int"

    def prototype(self) -> str:
        params = ", ".join(_declare(p.ctype, p.name) for p in self.params) or "void"
        return f"{self.return_type} {self.name}({params})"

    def resolve(self, ctype: str) -> str:
        """A type with typedefs replaced by what they name, spacing normalised ("int*" -> "int *")."""
        ctype = " ".join(ctype.replace("*", " * ").split())
        for _ in range(8):
            words = ctype.split()
            changed = [self.typedefs.get(w, w) if w not in ("*", "const") else w for w in words]
            if changed == words:
                break
            ctype = " ".join(" ".join(changed).replace("*", " * ").split())
        return ctype

    def to_dict(self) -> dict:
        return {"name": self.name, "return_type": self.return_type,
                "params": [[p.name, p.ctype] for p in self.params], "source": self.source, "deps": self.deps,
                "structs": self.structs, "typedefs": self.typedefs}

    @classmethod
    def from_dict(cls, d: dict) -> "CFunction":
        return cls(d["name"], d["return_type"], [Param(n, t) for n, t in d["params"]], d["source"],
                   d.get("deps", ""), {k: [tuple(f) for f in v] for k, v in d.get("structs", {}).items()},
                   d.get("typedefs", {}))


@dataclass
class IOResult:
    status: IOStatus
    detail: str = ""  # compiler diagnostics, the runtime status, or the first differing line

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def _declare(ctype: str, name: str) -> str:
    return f"{ctype}{'' if ctype.endswith('*') else ' '}{name}"


def _base(ctype: str) -> str:
    return " ".join(w for w in ctype.replace("*", " ").split() if w != "const")


def _scalar_literal(ctype: str, value) -> str:
    if ctype in FLOAT_FORMATS:
        return repr(float(value)) if abs(float(value)) != float("inf") else "1e308"
    if isinstance(value, str):  # a char given as a one-character string
        return str(ord(value))
    return f"{int(value)}{'u' if ctype.startswith('unsigned') or ctype.startswith('uint') else ''}"


def _print_scalar(ctype: str, expr: str, label: str) -> str:
    if ctype in FLOAT_FORMATS:
        return f'printf("{label} {FLOAT_FORMATS[ctype]}\\n", (double)({expr}));'
    if ctype.startswith("unsigned") or ctype.startswith("uint") or ctype == "size_t":
        return f'printf("{label} %llu\\n", (unsigned long long)({expr}));'
    return f'printf("{label} %lld\\n", (long long)({expr}));'


def _c_string(text: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in " _-+.,:;!?()[]{}<>=/|&^~@#$%*" else f"\\{ord(c):03o}"
                         for c in text) + '"'


def driver_source(fn: CFunction, examples: list[dict]) -> str:
    """The C driver: the reference's declarations, the prototype, one block per example printing its outputs."""
    lines = ["#include <stdio.h>", "#include <string.h>", "#include <stdlib.h>", "#include <stdint.h>",
             "#include <stdbool.h>", fn.deps, f"{fn.prototype()};", "", "int main(void) {"]
    returns = fn.resolve(fn.return_type)
    for i, example in enumerate(examples):
        body, args, after = [], [], []
        for j, param in enumerate(fn.params):
            if param.name not in example:
                raise SlmError(f"IO example {i} of {fn.name} has no value for parameter {param.name!r}")
            body_j, arg, after_j = _argument(fn, param, example[param.name], f"v{j}", f"{i} {param.name}")
            body += body_j
            args.append(arg)
            after += after_j
        call = f"{fn.name}({', '.join(args)})"
        if returns == "void":
            body.append(f"{call};")
        elif _base(returns) in INTEGER_TYPES or returns in FLOAT_FORMATS:
            body.append(f"{returns} r = {call};")
            body.append(_print_scalar(returns, "r", f"{i} return"))
        else:
            raise SlmError(f"{fn.name}: return type {fn.return_type!r} is not one the IO harness can compare")
        lines += ["  {"] + [f"    {b}" for b in body + after] + ["    fflush(stdout);", "  }"]
    lines += ["  return 0;", "}", ""]
    return "\n".join(lines)


def _argument(fn: CFunction, param: Param, value, var: str, label: str):
    ctype = fn.resolve(param.ctype)
    base = _base(ctype)
    pointer = ctype.count("*")
    if pointer == 0 and (base in INTEGER_TYPES or base in FLOAT_FORMATS):
        return [f"{base} {var} = {_scalar_literal(base, value)};"], var, []
    if pointer == 1 and base == "char" and isinstance(value, str):
        size = len(value.encode()) + 1 + STRING_SLACK
        body = [f"char {var}[{size}];", f"memset({var}, 0, sizeof {var});",
                f"memcpy({var}, {_c_string(value)}, {len(value.encode())});"]
        after = [] if "const" in ctype else [f'printf("{label} %s\\n", {var});']
        return body, var, after
    if pointer == 1 and (base in INTEGER_TYPES or base in FLOAT_FORMATS):
        items = list(value) or [0]
        body = [f"{base} {var}[{len(items)}] = {{{', '.join(_scalar_literal(base, x) for x in items)}}};"]
        after = [] if "const" in ctype else \
            [_print_scalar(base, f"{var}[{k}]", f"{label}[{k}]") for k in range(len(items))]
        return body, var, after
    if pointer == 1 and base in fn.structs:
        fields = fn.structs[base]
        inits = ", ".join(f".{name} = {_scalar_literal(_base(fn.resolve(t)), value.get(name, 0))}"
                          for t, name in fields)
        after = [] if "const" in ctype else \
            [_print_scalar(_base(fn.resolve(t)), f"{var}.{name}", f"{label}.{name}") for t, name in fields]
        return [f"{base} {var} = {{{inits}}};"], f"&{var}", after
    raise SlmError(f"{fn.name}: parameter {param.name!r} of type {param.ctype!r} is not one the IO harness "
                   f"can drive (scalars, pointers to scalars, strings, pointers to structs)")


def candidate_unit(candidate: str, declarations: str = "") -> str:
    """The candidate's translation unit: the standard headers, the given declarations, the candidate."""
    return "\n".join([*(f"#include <{h}>" for h in CANDIDATE_HEADERS), declarations, candidate, ""])


class IOHarness:
    """One function's IO check: the driver is compiled once, the reference's outputs are computed once."""

    def __init__(self, fn: CFunction, examples: list[dict], timeout: float = 5.0, memory_mb: int = 256,
                 flags: tuple[str, ...] | None = None):
        if not examples:
            raise SlmError(f"{fn.name}: no IO examples to judge it by")
        self.fn, self.examples, self.timeout, self.memory_mb = fn, examples, timeout, memory_mb
        self.flags = flags
        self._cache: dict[str, IOResult] = {}
        with scratch_directory("slm-cio-") as workdir:
            compiled = compile_c({"driver.c": driver_source(fn, examples)}, workdir, output="driver.o",
                                 extra_args=("-c",), **self._flag_args())
            if compiled.status != "ok":
                raise SlmError(f"{fn.name}: the IO driver does not compile: {_first_error(compiled.stderr)}")
            self._driver = Path(workdir, "driver.o").read_bytes()
        reference = self._run(candidate_unit(fn.source, fn.deps))
        if reference[0] != "ok":
            raise SlmError(f"{fn.name}: the reference does not run on its IO examples ({reference[0]}: "
                           f"{reference[1][:200]})")
        self.expected = reference[1]

    def _flag_args(self) -> dict:
        return {} if self.flags is None else {"flags": self.flags}

    def _run(self, unit: str) -> tuple[str, str]:
        with scratch_directory("slm-cio-") as workdir:
            compiled = compile_c({"candidate.c": unit, "driver.o": self._driver}, workdir, **self._flag_args())
            if compiled.status != "ok":
                return ("timeout" if compiled.status == "timeout" else "compile_error"), compiled.stderr
            ran = run_binary(workdir, timeout=self.timeout, memory_mb=self.memory_mb)
            return ran.status, ran.stdout if ran.status == "ok" else f"{ran.status}: {ran.stderr[-300:]}"

    def check(self, candidate: str, declarations: str = "") -> IOResult:
        """Judge one candidate definition (cached by its translation unit's text)."""
        unit = candidate_unit(candidate, declarations)
        key = hashlib.sha1(unit.encode()).hexdigest()
        if key not in self._cache:
            status, output = self._run(unit)
            if status == "compile_error":
                result = IOResult("compile_error", _first_error(output))
            elif status in ("timeout", "cpu_limit"):
                result = IOResult("timeout", output[:300])
            elif status != "ok":
                result = IOResult("runtime_error", output[:300])
            elif output == self.expected:
                result = IOResult("pass")
            else:
                result = IOResult("wrong_output", _first_difference(self.expected, output))
            self._cache[key] = result
        return self._cache[key]

    def compiles(self, candidate: str, declarations: str = "") -> bool:
        return self.check(candidate, declarations).status != "compile_error"


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if re.search(r"\berror\b", line):
            return line.strip()[:300]
    return stderr.strip()[:300]


def _first_difference(expected: str, got: str) -> str:
    for want, have in zip(expected.splitlines(), got.splitlines()):
        if want != have:
            return f"expected {want!r}, got {have!r}"
    return f"expected {len(expected.splitlines())} lines, got {len(got.splitlines())}"
