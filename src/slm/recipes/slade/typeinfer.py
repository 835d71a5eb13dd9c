"""Type inference for out-of-context C: the declarations a predicted function needs but does not have.

    inferred = infer_declarations("int f(point_t *p) { return p->x + p->y; }")
    inferred.declarations   # "typedef struct point_t point_t;\\nstruct point_t {\\n    int x;\\n    int y;\\n};\\n"
    inferred.missing        # {"types": ["point_t"], "structs": [], "functions": [], "identifiers": []}

SLaDe uses PsycheC for this step; here it is a small inference of our own: gcc (-fsyntax-only, in the C sandbox)
names what is missing (unknown type names, incomplete structs, undeclared identifiers, implicitly declared
functions), then pycparser reads the function, with the unknown type names stood in by placeholder typedefs, to
collect what the code does with them:
- a struct, or a typedef name used through `->` / `.`: a struct with one field per member accessed, in order
  of first use; a member that is indexed is a pointer (`int *`), one assigned or compared with a floating
  constant or a float/double variable is a `double`, anything else `int`;
- a typedef name never dereferenced: `typedef int NAME;`;
- a called undeclared function: `int NAME();` (any arguments); another undeclared identifier: `int NAME;`.
What it cannot know is the real layout (fields the function never touches, their order): a rescued function
compiles, and it passes IO only when the inferred layout matches what the caller passes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from slm.eval.c_io import candidate_unit
from slm.eval.csandbox import DEFAULT_FLAGS, compile_c
from slm.eval.sandbox import scratch_directory

# Typedef names the standard headers give the candidate, so that pycparser (which has no headers) can parse it.
KNOWN_TYPEDEFS = ("size_t", "ssize_t", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t",
                  "int64_t", "uint64_t", "intptr_t", "uintptr_t", "bool", "FILE", "ptrdiff_t")
_Q = "['\u2018\u2019]"  # gcc quotes names with ' or, in a UTF-8 locale, with curly quotes
_UNKNOWN_TYPE = re.compile(f"unknown type name {_Q}(\\w+){_Q}")
_STRUCT = re.compile(f"(?:invalid use of undefined type|dereferencing pointer to incomplete type|"
                     f"incomplete type) {_Q}(?:const )?struct (\\w+){_Q}")
_STORAGE = re.compile(f"storage size of {_Q}(\\w+){_Q} isn.t known")
_UNDECLARED = re.compile(f"{_Q}(\\w+){_Q} undeclared")
_IMPLICIT = re.compile(f"implicit declaration of function {_Q}(\\w+){_Q}")
_FLOATING = ("float", "double")


@dataclass
class Inference:
    declarations: str = ""
    missing: dict[str, list[str]] = field(default_factory=lambda: {"types": [], "structs": [], "functions": [],
                                                                    "identifiers": []})
    parsed: bool = True  # False: pycparser could not read the candidate (fields then stay unknown)

    @property
    def needed(self) -> bool:
        return any(self.missing.values())


def diagnose(candidate: str, declarations: str = "") -> tuple[bool, str]:
    """(compiles, gcc's diagnostics) for the candidate's unit as the IO harness builds it."""
    with scratch_directory("slm-slade-types-") as workdir:
        result = compile_c({"c.c": candidate_unit(candidate, declarations)}, workdir, output=None,
                           flags=DEFAULT_FLAGS, extra_args=("-fsyntax-only",))
    return result.status == "ok", result.stderr


def infer_declarations(candidate: str, diagnostics: str | None = None) -> Inference:
    """The declarations that make `candidate` compile alone, as far as its own text tells (see the module doc)."""
    if diagnostics is None:
        compiles, diagnostics = diagnose(candidate)
        if compiles:
            return Inference()
    types = _unique(_UNKNOWN_TYPE.findall(diagnostics))
    structs = _unique(_STRUCT.findall(diagnostics))
    functions = _unique(_IMPLICIT.findall(diagnostics))
    identifiers = [n for n in _unique(_UNDECLARED.findall(diagnostics)) if n not in functions]
    inference = Inference(missing={"types": types, "structs": structs, "functions": functions,
                                   "identifiers": identifiers})
    uses = _member_uses(candidate, types)
    if uses is None:
        inference.parsed, uses = False, ({}, set())
    members, called = uses
    for var in _STORAGE.findall(diagnostics):  # `struct S v;` with S undefined: S is the variable's struct
        match = re.search(rf"struct\s+(\w+)\s+{var}\b", candidate)
        if match and match.group(1) not in structs:
            structs.append(match.group(1))
    lines = []
    for name in types:
        if members.get(name):
            lines.append(f"typedef struct {name} {name};")
            lines.append(_struct(name, members[name]))
        else:
            lines.append(f"typedef int {name};")
    lines += [_struct(tag, members.get(f"struct {tag}", {})) for tag in structs]
    lines += [f"int {name}();" for name in functions]
    lines += [f"int {name}();" if name in called else f"int {name};" for name in identifiers]
    inference.declarations = "\n".join(lines) + ("\n" if lines else "")
    return inference


def _struct(tag: str, fields: dict[str, str]) -> str:
    body = "".join(f"    {ctype}{'' if ctype.endswith('*') else ' '}{name};\n" for name, ctype in fields.items())
    return f"struct {tag} {{\n" + (body or "    int unused_;\n") + "};"


def _unique(items):
    return list(dict.fromkeys(items))


def _member_uses(candidate: str, unknown_types: list[str]):
    """({type -> {member: ctype}}, names called as functions) from pycparser's AST; None if it cannot parse.

    A type is "struct TAG" or a typedef name; members come from `v->m` / `v.m` where v is declared with it."""
    try:
        from pycparser import c_ast, c_parser
    except ImportError:  # pragma: no cover - a dependency of the slade recipe (pyproject: the train extra)
        return None
    prelude = "".join(f"typedef int {name};\n" for name in (*KNOWN_TYPEDEFS, *unknown_types))
    text = "\n".join(line for line in candidate.splitlines() if not line.lstrip().startswith("#"))
    try:
        ast = c_parser.CParser().parse(prelude + text)
    except Exception:  # pycparser raises ParseError and, on odd input, others; either way: no AST
        return None

    declared: dict[str, tuple[str, bool]] = {}  # variable -> (type key, is floating)
    members: dict[str, dict[str, str]] = {}
    called: set[str] = set()

    def type_key(node) -> tuple[str | None, bool]:
        while isinstance(node, (c_ast.PtrDecl, c_ast.ArrayDecl)):
            node = node.type
        if isinstance(node, c_ast.TypeDecl):
            inner = node.type
            if isinstance(inner, c_ast.Struct) and inner.name:
                return f"struct {inner.name}", False
            if isinstance(inner, c_ast.IdentifierType):
                names = inner.names
                return (names[-1] if names[-1] in unknown_types else None), any(n in _FLOATING for n in names)
        return None, False

    def floating(node) -> bool:
        if isinstance(node, c_ast.Constant):
            return node.type in _FLOATING
        if isinstance(node, c_ast.ID):
            return declared.get(node.name, (None, False))[1]
        if isinstance(node, c_ast.BinaryOp):
            return floating(node.left) or floating(node.right)
        if isinstance(node, c_ast.UnaryOp):
            return floating(node.expr)
        return False

    class Visitor(c_ast.NodeVisitor):
        def visit_Decl(self, node):
            if node.name:
                declared[node.name] = type_key(node.type)
            self.generic_visit(node)

        def visit_FuncCall(self, node):
            if isinstance(node.name, c_ast.ID):
                called.add(node.name.name)
            self.generic_visit(node)

        def visit_ArrayRef(self, node):
            self._note(node.name, "int *")
            self.generic_visit(node)

        def visit_Assignment(self, node):
            self._note(node.lvalue, "double" if floating(node.rvalue) else None)
            self._note(node.rvalue, "double" if floating(node.lvalue) else None)
            self.generic_visit(node)

        def visit_BinaryOp(self, node):
            self._note(node.left, "double" if floating(node.right) else None)
            self._note(node.right, "double" if floating(node.left) else None)
            self.generic_visit(node)

        def visit_StructRef(self, node):
            self._note(node, None)
            self.generic_visit(node)

        def _note(self, node, ctype):
            if not isinstance(node, c_ast.StructRef) or not isinstance(node.name, c_ast.ID):
                return
            key = declared.get(node.name.name, (None, False))[0]
            if key is None:
                return
            fields = members.setdefault(key, {})
            current = fields.get(node.field.name)
            if ctype is not None and current in (None, "int"):
                fields[node.field.name] = ctype
            elif current is None:
                fields[node.field.name] = "int"

    Visitor().visit(ast)
    return members, called
