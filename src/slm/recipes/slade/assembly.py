"""Compile C functions to assembly per (ISA, optimisation level) and cut out each function's body, as ExeBench does.

    isas = available_isas()                      # {"x86_64": None, "aarch64": None or why it is skipped}
    asm = compile_functions([fn1, fn2], "x86_64", "O3")   # one string (or None) per function
    extract_function(open("f.s").read(), "count_below")

Each function is compiled in its own file (the standard headers, its declarations, its definition), many files
per compiler call, in the C sandbox. The body is the lines from the function's label to its `.size`, with
assembler directives (CFI, alignment, sections, `.type`) dropped and local labels (.L3:) kept; the constants it
loads from literal pools (.LC0: .long ..., .string "...") are appended, because without them a float constant
or a string literal is not in the input at all. Whitespace is normalised to one space (a tab after the mnemonic).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from slm.eval.c_io import CFunction, candidate_unit
from slm.eval.csandbox import compile_c
from slm.eval.sandbox import scratch_directory

COMPILERS = {"x86_64": "gcc", "aarch64": "aarch64-linux-gnu-gcc"}
OPT_LEVELS = ("O0", "O3")
COMMON_FLAGS = ("-w", "-fno-asynchronous-unwind-tables", "-fno-ident", "-fno-stack-protector", "-fno-pic")
ISA_FLAGS = {"x86_64": ("-fcf-protection=none",), "aarch64": ()}
COMMENTS = {"x86_64": "#", "aarch64": "//"}  # AArch64 writes immediates as #32: only // starts a comment there
_MARKERS = re.compile(r"^\.L(FB|FE|VL|BB|BE)\d+:")  # gcc's function begin/end markers, not jump targets
DATA_DIRECTIVES = (".long", ".quad", ".word", ".byte", ".value", ".short", ".string", ".ascii", ".8byte",
                   ".4byte", ".2byte", ".xword", ".dword", ".hword", ".zero", ".float", ".double")
_LABEL = re.compile(r"^([.\w$]+):")


def available_isas() -> dict[str, str | None]:
    """Each ISA -> None when its compiler is installed, else the reason it is skipped."""
    return {isa: None if shutil.which(cc) else
            f"{cc} is not installed (apt-get install gcc-aarch64-linux-gnu, or `make slade-deps`)"
            for isa, cc in COMPILERS.items()}


def compile_functions(fns: list[CFunction], isa: str, opt: str, batch: int = 64, timeout: float = 120.0
                      ) -> list[str | None]:
    """Each function's extracted assembly for `isa` at -`opt`; None where it did not compile or was not found."""
    if opt not in OPT_LEVELS:
        raise ValueError(f"optimisation level {opt!r}; choose from {OPT_LEVELS}")
    flags = (f"-{opt}", *COMMON_FLAGS, *ISA_FLAGS[isa])
    out: list[str | None] = []
    for start in range(0, len(fns), batch):
        chunk = fns[start:start + batch]
        sources = {f"f{i}.c": candidate_unit(fn.source, fn.deps) for i, fn in enumerate(chunk)}
        with scratch_directory("slm-slade-asm-") as workdir:
            result = compile_c(sources, workdir, output=None, flags=flags, extra_args=("-S",),
                               compiler=COMPILERS[isa], timeout=timeout)
            if result.status != "ok" and len(chunk) > 1:  # one bad file fails the call: retry them one by one
                out += [compile_functions([fn], isa, opt, timeout=timeout)[0] for fn in chunk]
                continue
            for i, fn in enumerate(chunk):
                path = Path(workdir, f"f{i}.s")
                out.append(extract_function(path.read_text(), fn.name, COMMENTS[isa]) if path.is_file() else None)
    return out


def extract_function(asm: str, name: str, comment: str = "#") -> str | None:
    """The body of `name` in gcc's -S output: label to .size, directives stripped, used literal pools appended."""
    lines = [line.split(comment, 1)[0].rstrip() if not _is_string(line) else line.rstrip()
             for line in asm.splitlines()]
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == f"{name}:")
    except StopIteration:
        return None
    body = [f"{name}:"]
    for line in lines[start + 1:]:
        text = line.strip()
        if text.startswith(".size") or text.startswith(".cfi_endproc") or \
                (text.startswith(".section") and ".text" not in text):
            break
        if not text or (text.startswith(".") and not _LABEL.match(text)) or _MARKERS.match(text):
            continue  # a directive
        body.append(_normalise(text))
    used = set(re.findall(r"\.LC\w+", "\n".join(body[1:])))
    return "\n".join(body + _literal_pools(lines, used))


def _is_string(line: str) -> bool:
    return line.strip().startswith((".string", ".ascii"))


def _literal_pools(lines: list[str], used: set[str]) -> list[str]:
    out, current = [], None
    for line in lines:
        text = line.strip()
        match = _LABEL.match(text)
        if match:
            current = match.group(1) if match.group(1) in used else None
            if current:
                out.append(f"{current}:")
            continue
        if current and text.startswith(DATA_DIRECTIVES):
            out.append(_normalise(text))
        elif current and text and not text.startswith((".align", ".p2align", ".balign")):
            current = None
    return out


def _normalise(text: str) -> str:
    mnemonic, _, operands = text.partition("\t") if "\t" in text else text.partition(" ")
    operands = " ".join(operands.split())
    return f"{mnemonic.strip()} {operands}".strip()
