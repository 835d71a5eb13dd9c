"""Judging decompilations: IO accuracy (top-1 and the first of the n-best that compiles and passes) under three
declaration settings, edit similarity, and the baselines that need no training.

    judge = Judge(data["functions"])                         # one IOHarness per test function, made lazily
    row = judge.score(function_index, ["int f(...) {...}", ...])   # {"declarations": {...}, "none": ..., ...}

Settings (what the candidate's translation unit gets besides the standard headers):
  declarations  the reference's own structs and typedefs (ExeBench's deps: the evaluation SLaDe reports);
  none          nothing: the function alone, as a decompiler would have to emit it;
  inferred      the declarations type inference (slade.typeinfer) supplies when `none` does not compile.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SETTINGS = ("declarations", "none", "inferred")
_C_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+\.?\d*|\S")


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / the longer length, over C tokens (identifiers, numbers, punctuation)."""
    from slm.eval.metrics import sequence_similarity

    return sequence_similarity(_C_TOKEN.findall(a), _C_TOKEN.findall(b))


def rename_function(source: str, old: str, new: str) -> str:
    """`source` with the identifier `old` replaced by `new` (a retrieved function takes the query's name)."""
    return re.sub(rf"\b{re.escape(old)}\b", new, source)


def function_name(asm: str) -> str:
    """The name a function's assembly is labelled with (its first line, `name:`)."""
    return asm.split("\n", 1)[0].rstrip(":")


@dataclass
class Scored:
    status: str  # the top-1 candidate's IO status
    passed_top1: bool
    passed_any: bool  # some candidate of the n-best compiles and passes
    compiled_top1: bool


class Judge:
    def __init__(self, functions: list[dict], timeout: float = 5.0):
        self.functions, self.timeout = functions, timeout
        self._harnesses: dict[int, object] = {}
        self._inferred: dict[str, str] = {}
        self.rescued = {"compile": 0, "pass": 0, "needed": 0}  # type inference on top-1 candidates

    def harness(self, index: int):
        from slm.eval.c_io import CFunction, IOHarness

        if index not in self._harnesses:
            f = self.functions[index]
            self._harnesses[index] = IOHarness(CFunction.from_dict(f["fn"]), f["examples"], timeout=self.timeout)
        return self._harnesses[index]

    def declarations(self, index: int, candidate: str, setting: str) -> str:
        if setting == "declarations":
            return self.functions[index]["fn"]["deps"]
        if setting == "none":
            return ""
        if candidate not in self._inferred:
            from slm.recipes.slade.typeinfer import infer_declarations

            harness = self.harness(index)
            plain = harness.check(candidate)
            self._inferred[candidate] = "" if plain.status != "compile_error" else \
                infer_declarations(candidate, diagnostics=_diagnostics(candidate)).declarations
        return self._inferred[candidate]

    def score(self, index: int, candidates: list[str], settings=SETTINGS, count_rescue: bool = False
              ) -> dict[str, Scored]:
        """Each setting's verdict on the n-best list `candidates` (best first) for test function `index`."""
        harness = self.harness(index)
        out = {}
        for setting in settings:
            statuses = []
            for candidate in candidates:
                result = harness.check(candidate, self.declarations(index, candidate, setting))
                statuses.append(result.status)
                if result.passed:
                    break  # the first that compiles and passes: the rest need no judging
            first = statuses[0] if statuses else "compile_error"
            out[setting] = Scored(first, first == "pass", "pass" in statuses, first != "compile_error")
        if count_rescue and {"none", "inferred"} <= set(out) and candidates:
            if out["none"].status == "compile_error":
                self.rescued["needed"] += 1
                self.rescued["compile"] += out["inferred"].compiled_top1
                self.rescued["pass"] += out["inferred"].passed_top1
        return out


def _diagnostics(candidate: str) -> str:
    from slm.recipes.slade.typeinfer import diagnose

    return diagnose(candidate)[1]


def return_zero(fn: dict) -> str:
    """The trivial baseline: the reference's prototype with a body that returns 0 (or nothing)."""
    from slm.eval.c_io import CFunction

    f = CFunction.from_dict(fn)
    return f"{f.prototype()}\n{{\n" + ("" if f.return_type == "void" else "    return 0;\n") + "}\n"


class Retrieval:
    """Nearest neighbours by assembly: TF-IDF over the assembly's tokens with every number and label folded to one
    symbol, cosine similarity, within the query's own (ISA, -O level); a neighbour's C takes the query's name."""

    def __init__(self, train_rows: list[dict]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.rows: dict[tuple[str, str], list[dict]] = {}
        for row in train_rows:
            self.rows.setdefault((row["isa"], row["opt"]), []).append(row)
        self.vectorizers, self.matrices = {}, {}
        for target, rows in self.rows.items():
            vec = TfidfVectorizer(token_pattern=r"\S+", lowercase=False, ngram_range=(1, 2), sublinear_tf=True)
            self.matrices[target] = vec.fit_transform([_fold(r["asm"]) for r in rows])
            self.vectorizers[target] = vec

    def candidates(self, row: dict, k: int) -> list[str]:
        target = (row["isa"], row["opt"])
        if target not in self.rows:
            return []
        scores = (self.matrices[target] @ self.vectorizers[target].transform([_fold(row["asm"])]).T).toarray().ravel()
        best = scores.argsort()[::-1][:k]
        name = function_name(row["asm"])
        return [rename_function(self.rows[target][i]["c"], function_name(self.rows[target][i]["asm"]), name)
                for i in best]


def _fold(asm: str) -> str:
    body = asm.split("\n", 1)[1] if "\n" in asm else ""
    body = re.sub(r"\.L\w+", "LBL", body)
    body = re.sub(r"-?\b\d+\b", "N", body)
    return " ".join(re.findall(r"[%\w.$#]+|[^\s\w]", body))
