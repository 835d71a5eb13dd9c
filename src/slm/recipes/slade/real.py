"""Real C functions for SLaDe, harvested ExeBench's way from the C files inside source distributions on PyPI.

    python -m slm.recipes.slade.real                 # download SOURCES' sdists, harvest, write REAL_FUNCTIONS
    load_real(count=200, seed=0)                     # [GeneratedFunction] from the embedded harvest, family
                                                     # "real/<package>"; the JSON keeps package, file and licence

ExeBench keeps a function from a real repository when it compiles out of its context and can be driven with
generated inputs; so here. Per package (every .c and .h file read from the tarball, nothing extracted or built):
- comments and preprocessor lines are dropped (`#if 0` and `#ifdef __cplusplus` blocks with them), the text is scanned at brace depth 0
  for definitions `RET NAME(PARAMS) { ... }` (no function pointers, no varargs);
- storage words and attribute-like macros before the return type are dropped (`static`, `inline`,
  `FORCE_INLINE`, ...), so a static helper compiles standalone and -O3 keeps it;
- the package's scalar typedefs (`typedef unsigned int U32;`) and one-line macros (`#define BLOCK 64`,
  `#define ROTL(x, r) ...`; the first definition of a name) the function uses, and what those use, become its
  declarations (`CFunction.deps`);
- a function is a candidate when the IO harness can drive every parameter (integer and floating scalars,
  pointers to them as arrays, `char *` strings) and it returns a scalar, or void with something written through
  a pointer; it calls nothing but libc (anything else fails to link and it is dropped);
- inputs: arrays of 8-24 items of the pointee's type, a length-like integer (`n`, `len`, `size`, `count`, ...)
  set to the arrays' length, other integers small, strings of letters; kept when the reference runs on them
  (compiled at -O0 and at -O2, in the C sandbox) with the same outputs under both builds, which rejects most
  functions whose result depends on undefined behaviour (reads past the arrays, uninitialised memory), and its
  outputs differ between at least two examples.
What this finds is hash and checksum rounds, bit tricks, byte (un)packing, string scanners and small numeric
helpers: library code, not ExeBench's mix of application code. The licences are all permissive (MIT, BSD,
Apache-2.0, PSF, Unlicense); each function's record names its package, version, file and licence.
"""
from __future__ import annotations

import json
import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from slm.eval.c_io import FLOAT_FORMATS, INTEGER_TYPES, CFunction, Param, _base
from slm.recipes.slade.generator import GeneratedFunction

REAL_FUNCTIONS = Path(__file__).with_name("real_functions.json")
# package: (version, licence as its PyPI metadata gives it); pinned so a rerun harvests the same files
SOURCES = {
    "crcmod": ("1.7", "MIT"), "mmh3": ("5.3.1", "MIT"), "xxhash": ("4.1.0", "BSD-2-Clause"),
    "lz4": ("4.4.5", "BSD-3-Clause"), "zstandard": ("0.25.0", "BSD-3-Clause"), "brotli": ("1.2.1", "MIT"),
    "pycryptodome": ("4.5.0", "BSD-2-Clause AND Unlicense AND MIT"), "pynacl": ("1.6.2", "Apache-2.0"),
    "cmarkgfm": ("2025.10.22", "MIT"), "pyahocorasick": ("2.3.1", "BSD-3-Clause and Public-Domain"),
    "bitarray": ("3.12.3", "PSF-2.0"), "simplejson": ("4.3.0", "MIT OR AFL-2.1"),
    "markupsafe": ("3.0.4", "BSD-3-Clause"), "ujson": ("6.1.0", "BSD-3-Clause AND TCL"),
    "zopfli": ("0.4.3", "Apache-2.0"), "pyroaring": ("1.2.0", "MIT"), "deflate": ("0.9.0", "MIT"),
    "pybase64": ("1.5.1", "BSD-2-Clause"), "argon2-cffi-bindings": ("26.2.0", "MIT"), "cbor2": ("6.3.0", "MIT"),
}
TYPE_WORDS = {"void", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "const", "_Bool",
              "bool", "size_t", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t", "int64_t",
              "uint64_t", "struct", "enum", "union", "volatile", "register", "restrict", "__restrict"}
DROPPED_WORDS = {"static", "inline", "__inline", "__inline__", "extern", "register", "volatile", "restrict",
                 "__restrict", "__restrict__"}
LENGTH_NAME = re.compile(r"^(n|len|length|size|count|num|cnt|nbytes|nwords|nelem|bytes|.*_?(len|length|size|count|"
                         r"num|cnt))$", re.IGNORECASE)
_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.DOTALL)
_TYPEDEF = re.compile(r"\btypedef\s+([\w\s]+?)\s+(\w+)\s*;")
_MACRO = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+(?:\([\w\s,]*\))?)[ \t]+([^\n]*[^\s\\])[ \t]*$", re.MULTILINE)
_HEADER = re.compile(r"^(?P<ret>[\w\s\*]*?[\w\*])\s*\b(?P<name>[A-Za-z_]\w*)\s*\((?P<params>[^()]*)\)\s*$")


# ------------------------------------------------------------------------------------------------ parsing
def strip_comments(text: str) -> str:
    """Comments replaced by a space; string and character literals kept as they are."""
    return _TOKENS.sub(lambda m: " " if m.group(0).startswith("/") else m.group(0), text)


def drop_preprocessor(text: str) -> str:
    """Preprocessor lines (with their continuations) removed, and what `#if 0` or a `__cplusplus` test
    guards (C++'s `extern "C" {` would put every definition at depth 1)."""
    out, skip_depth, depth, continued = [], 0, 0, False
    for line in text.splitlines():
        directive = continued or line.lstrip().startswith("#")
        continued = directive and line.rstrip().endswith("\\")
        if not directive:
            if not skip_depth:
                out.append(line)
            continue
        words = line.lstrip().lstrip("#").split()
        word = words[0] if words else ""
        if word in ("if", "ifdef", "ifndef"):
            depth += 1
            if not skip_depth and (word == "if" and words[1:2] == ["0"] or "__cplusplus" in line):
                skip_depth = depth
        elif word == "endif":
            if skip_depth == depth:
                skip_depth = 0
            depth -= 1
        elif word in ("else", "elif") and skip_depth == depth:
            skip_depth = 0  # the other branch of an `#if 0` is live
        out.append("")  # keep line numbers
    return "\n".join(out)


def top_level_definitions(text: str) -> list[tuple[str, str]]:
    """(header, body with braces) for every `{...}` at depth 0 preceded by something that ends in `)`."""
    found, depth, start, header_start = [], 0, 0, 0
    i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":  # skip a literal, so braces inside strings do not count
            m = re.compile(r'"(?:\\.|[^"\\\n])*"' if c == '"' else r"'(?:\\.|[^'\\\n])*'").match(text, i)
            i = m.end() if m else i + 1
            continue
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                header = text[header_start:start].strip()
                if header.endswith(")"):
                    found.append((header, text[start:i + 1]))
                header_start = i + 1
            depth = max(depth, 0)
        elif c == ";" and depth == 0:
            header_start = i + 1
        i += 1
    return found


def scalar_typedefs(texts: list[str]) -> dict[str, str]:
    """`typedef <scalar words> NAME;` across the files: NAME -> the words (first definition wins)."""
    out: dict[str, str] = {}
    for text in texts:
        for words, name in _TYPEDEF.findall(text):
            words = " ".join(words.split())
            if name not in out and not words.startswith(("struct", "enum", "union")):
                out[name] = words
    return out


def one_line_macros(texts: list[str]) -> dict[str, str]:
    """`#define NAME value` and `#define NAME(args) value` on one line, across the files: the name (without
    arguments) -> the definition's text. A name defined twice keeps its first definition."""
    out: dict[str, str] = {}
    for text in texts:
        for head, value in _MACRO.findall(text):
            out.setdefault(head.split("(", 1)[0], f"#define {head} {value}")
    return out


def _split_param(text: str) -> tuple[str, str] | None:
    text = " ".join(text.replace("*", " * ").split())
    m = re.match(r"^(.*?)(\w+)\s*(\[[^\]]*\])?$", text)
    if not m or not m.group(1).strip():
        return None
    ctype = m.group(1).strip() + (" *" if m.group(3) else "")
    ctype = " ".join(w for w in ctype.split() if w not in DROPPED_WORDS)
    return m.group(2), ctype.replace(" *", "*").replace("*", " *").replace("* *", "**").strip()


def _scalar(fn: CFunction, ctype: str) -> str | None:
    """The scalar a type resolves to ("unsigned int"), or None."""
    base = _base(fn.resolve(ctype))
    return base if base in INTEGER_TYPES or base in FLOAT_FORMATS else None


@dataclass
class Definition:
    path: str
    ret: str  # the return type, storage words and attribute-like macros dropped
    name: str
    params: str  # as written
    body: str

    def text(self, storage: str = "") -> str:
        return f"{storage}{self.ret} {self.name}({self.params})\n{self.body}\n"


def parse_header(header: str, known_types: set[str]) -> tuple[str, str, str] | None:
    """(return type, name, parameter text) of a definition's header, or None when it is not a function's."""
    m = _HEADER.match(" ".join(header.split()))
    if not m or m.group("name") in ("if", "while", "for", "switch", "return", "sizeof"):
        return None
    ret_words = [w for w in m.group("ret").replace("*", " * ").split()
                 if w not in DROPPED_WORDS and (w == "*" or w in known_types)]
    if not ret_words:
        return None
    return " ".join(ret_words).replace(" *", "*").replace("*", " *").strip(), m.group("name"), m.group("params").strip()


def _identifiers(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]\w*", text))


class Package:
    """One package's definitions, scalar typedefs and one-line macros; `function(name)` makes a CFunction."""

    def __init__(self, files: dict[str, str]):
        texts = {path: strip_comments(text) for path, text in files.items()}
        self.typedefs = scalar_typedefs(list(texts.values()))
        self.macros = one_line_macros(list(texts.values()))
        known = TYPE_WORDS | set(self.typedefs)
        self.definitions: dict[str, Definition] = {}
        for path, text in texts.items():
            for header, body in top_level_definitions(drop_preprocessor(text)):
                parsed = parse_header(header.split("\n\n")[-1], known)
                if parsed and parsed[1] not in self.definitions:
                    self.definitions[parsed[1]] = Definition(path, *parsed, body)

    def helpers(self, name: str, limit: int = 3) -> list[Definition] | None:
        """The package functions `name` calls, callees first (None: more than `limit`, or a recursion)."""
        order: list[str] = []

        def visit(current: str, stack: tuple[str, ...]) -> bool:
            for called in re.findall(r"\b([A-Za-z_]\w*)\s*\(", self.definitions[current].body):
                if called in stack:
                    return False
                if called in self.definitions and called not in order:
                    if not visit(called, stack + (called,)):
                        return False
                    order.append(called)
            return len(order) <= limit

        return [self.definitions[n] for n in order] if visit(name, (name,)) else None

    def function(self, name: str) -> CFunction | None:
        """A CFunction for the definition when the IO harness can drive its signature, else None. Package
        functions it calls (at most 3) come with it as `static` definitions in its declarations."""
        d = self.definitions[name]
        if not d.params or d.params == "void" or "..." in d.params:
            return None
        params = [_split_param(p) for p in d.params.split(",")]
        if any(p is None for p in params) or len({p[0] for p in params}) != len(params):
            return None
        helpers = self.helpers(name)
        if helpers is None:
            return None
        used = _identifiers(d.text() + "".join(h.text() for h in helpers))
        for _ in range(4):  # what the used macros use
            used |= {w for m in used & self.macros.keys() for w in _identifiers(self.macros[m])}
        needed = used & self.typedefs.keys()
        for _ in range(4):  # typedefs of typedefs
            needed |= {w for n in list(needed) for w in self.typedefs[n].split() if w in self.typedefs}
        fn = CFunction(name, d.ret, [Param(n, t) for n, t in params], "",
                       typedefs={n: self.typedefs[n] for n in needed})
        returns = fn.resolve(d.ret)
        if returns != "void" and _scalar(fn, d.ret) is None or returns.count("*"):
            return None
        writes = False
        for p in fn.params:
            resolved = fn.resolve(p.ctype)
            if _scalar(fn, p.ctype) is None or resolved.count("*") > 1:
                return None
            writes |= resolved.count("*") == 1 and "const" not in resolved.split()
        if returns == "void" and not writes:
            return None
        order: list[str] = []
        while len(order) < len(needed):  # a typedef after the typedefs it is written with
            ready = sorted(n for n in needed - set(order)
                           if all(w in order for w in self.typedefs[n].split() if w in needed and w != n))
            if not ready:
                return None  # a cycle: not a scalar typedef chain
            order += ready
        deps = "".join(f"typedef {self.typedefs[n]} {n};\n" for n in order)
        deps += "".join(f"{self.macros[m]}\n" for m in sorted(used & self.macros.keys()))
        deps += "".join(h.text("static ") for h in helpers)
        return CFunction(name, fn.return_type, fn.params, f"{fn.prototype()}\n{d.body}\n", deps=deps,
                         typedefs=fn.typedefs)


def candidates(files: dict[str, str]) -> list[tuple[str, CFunction]]:
    """(file, CFunction) for every drivable definition in a package's files (the first of a name wins)."""
    package = Package(files)
    out = []
    for name, d in package.definitions.items():
        fn = package.function(name)
        if fn is not None:
            out.append((d.path, fn))
    return out


# ------------------------------------------------------------------------------------------------ inputs
def _value(fn: CFunction, ctype: str, r: random.Random):
    base = _scalar(fn, ctype)
    if base in FLOAT_FORMATS:
        return round(r.uniform(-10, 10), 3)
    unsigned = base.startswith(("unsigned", "uint")) or base in ("size_t", "unsigned")
    if "char" in base or "8" in base:
        return r.randint(0, 255) if unsigned else r.randint(32, 126)
    if "16" in base or "short" in base:
        return r.randint(0, 65535) if unsigned else r.randint(-300, 300)
    if base in ("bool", "_Bool"):
        return r.randint(0, 1)
    if unsigned and r.random() < 0.5:
        return r.randint(0, 2 ** (64 if "64" in base or "long" in base else 32) - 1)
    return r.randint(0, 20) if r.random() < 0.5 else r.randint(-50, 50) if not unsigned else r.randint(0, 300)


def make_examples(fn: CFunction, r: random.Random, count: int) -> list[dict]:
    arrays = [p for p in fn.params if fn.resolve(p.ctype).count("*")]
    examples = []
    for _ in range(count):
        length = r.randint(8, 24)
        example = {}
        for p in fn.params:
            resolved = fn.resolve(p.ctype)
            if resolved.count("*") and _base(resolved) == "char":
                example[p.name] = "".join(r.choice("abcdefxyz ABC,.019") for _ in range(r.randint(1, length)))
            elif resolved.count("*"):
                example[p.name] = [_value(fn, p.ctype.replace("*", ""), r) for _ in range(length)]
            elif arrays and LENGTH_NAME.match(p.name) and _scalar(fn, p.ctype) not in FLOAT_FORMATS:
                example[p.name] = length
            else:
                example[p.name] = _value(fn, p.ctype, r)
        examples.append(example)
    return examples


def validate(fn: CFunction, examples: list[dict]) -> str | None:
    """Why the function is not kept (None: kept): see the module doc."""
    from slm.errors import SlmError
    from slm.eval.c_io import IOHarness
    from slm.eval.csandbox import DEFAULT_FLAGS

    try:
        plain = IOHarness(fn, examples, timeout=2.0)
        optimised = IOHarness(fn, examples, timeout=2.0, flags=(*DEFAULT_FLAGS, "-O2"))
    except SlmError as e:
        return "does not compile alone" if "compile" in str(e) else "does not run on its inputs"
    if plain.expected != optimised.expected:
        return "outputs differ between -O0 and -O2 (undefined behaviour)"
    per_example: dict[str, list[str]] = {}
    for line in plain.expected.splitlines():
        index, _, rest = line.partition(" ")
        per_example.setdefault(index, []).append(rest)
    if len({tuple(v) for v in per_example.values()}) < 2:
        return "the same outputs on every input"
    return None


def harvest(archives: dict[str, Path], n_examples: int = 5, seed: int = 0, say=print) -> tuple[list, dict]:
    """(kept functions as JSON records, counts of why the others were dropped) from {package: sdist path}."""
    from tqdm import tqdm

    kept, dropped, seen = [], {}, set()
    r = random.Random(seed)
    for package, archive in archives.items():
        files = {}
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith((".c", ".h")) and member.size < 8_000_000:
                    files[member.name.split("/", 1)[-1]] = tar.extractfile(member).read().decode("utf-8", "replace")
        found = candidates(files)
        n_kept = 0
        for path, fn in tqdm(found, desc=f"harvest {package}", unit="fn", leave=False):
            text = " ".join((fn.deps + fn.source).split())
            if text in seen:  # bundled by two packages (xxhash, lz4 and zstd ship each other's code)
                dropped["a copy of one kept from another package"] = \
                    dropped.get("a copy of one kept from another package", 0) + 1
                continue
            seen.add(text)
            examples = make_examples(fn, r, n_examples)
            why = validate(fn, examples)
            if why:
                dropped[why] = dropped.get(why, 0) + 1
                continue
            version, licence = SOURCES.get(package, ("?", "?"))
            kept.append({"fn": fn.to_dict(), "examples": examples, "package": package, "version": version,
                         "license": licence, "path": path})
            n_kept += 1
        say(f"{package}: {len(files)} files, {len(found)} drivable definitions, {n_kept} kept")
    return kept, dropped


def load_real(count: int | None = None, seed: int = 0, path: Path = REAL_FUNCTIONS) -> list[GeneratedFunction]:
    """`count` functions (None: all) of the harvest, a seeded sample, as GeneratedFunction(family real/<package>)."""
    from slm.errors import ConfigError

    if not Path(path).is_file():
        raise ConfigError(f"real functions file {path} does not exist: run `python -m slm.recipes.slade.real`")
    records = json.loads(Path(path).read_text())["functions"]
    if count is not None and count < len(records):
        records = random.Random(seed).sample(records, count)
    return [GeneratedFunction(CFunction.from_dict(rec["fn"]), rec["examples"], f"real/{rec['package']}")
            for rec in records]


def download(package: str, version: str, into: Path, index: str = "https://pypi.org/simple") -> Path:
    """The package's sdist at `version`, from the index's JSON simple API (PEP 691), its sha256 checked."""
    import hashlib
    import urllib.request

    request = urllib.request.Request(f"{index}/{package}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        files = json.load(reply)["files"]
    sdists = [f for f in files if f["filename"].endswith((f"-{version}.tar.gz", f"-{version}.zip"))]
    if not sdists:
        raise RuntimeError(f"{package} {version} has no source distribution on {index}")
    target = into / sdists[0]["filename"]
    if not target.is_file():
        with urllib.request.urlopen(sdists[0]["url"], timeout=300) as reply:
            payload = reply.read()
        want = sdists[0].get("hashes", {}).get("sha256")
        if want and hashlib.sha256(payload).hexdigest() != want:
            raise RuntimeError(f"{target.name}: sha256 does not match the index's")
        target.write_bytes(payload)
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse

    from slm.io import atomic_write_text

    parser = argparse.ArgumentParser(prog="python -m slm.recipes.slade.real", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdists", default="runs/slade-sdists", help="where the downloaded sdists are kept")
    parser.add_argument("--out", default=str(REAL_FUNCTIONS), help="the harvest's JSON file")
    parser.add_argument("--packages", nargs="*", default=list(SOURCES), help="a subset of SOURCES")
    parser.add_argument("--examples", type=int, default=5, help="IO examples per function")
    args = parser.parse_args(argv)
    into = Path(args.sdists)
    into.mkdir(parents=True, exist_ok=True)
    archives = {p: download(p, SOURCES[p][0], into) for p in args.packages}
    kept, dropped = harvest(archives, n_examples=args.examples)
    summary = {"sources": {p: {"version": SOURCES[p][0], "license": SOURCES[p][1]} for p in args.packages},
               "dropped": dropped, "functions": kept}
    atomic_write_text(Path(args.out), json.dumps(summary, indent=0) + "\n")
    print(f"{len(kept)} functions kept; dropped: {dropped}; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
