"""SLaDe's data: functions, their assembly per (ISA, -O level), deduplicated and split by function.

    data = build_dataset(settings, root)        # made once under root/data (a rerun reads it back)
    data["train"][0]  # {"function": 7, "family": "strings", "isa": "x86_64", "opt": "O3", "asm": ..., "c": ...}
    data["functions"][7]                        # {"fn": CFunction.to_dict(), "examples": [...], "family": ...}

One row per (function, target); a function's rows are all in train or all in test (split by function, after
dropping functions whose assembly tuple repeats an earlier one), so no test function's source (nor the
assembly of another of its targets) is seen in training. Generated, real (harvested from C sources by
slade.real) and user functions (JSON files of {"fn": CFunction dict, "examples": [...]}) are marked by
`origin` and reported separately.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from slm.errors import ConfigError, SlmError


def _key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def load_user_functions(paths: list[str]) -> list:
    """Functions from JSON files: one object {"fn": {...CFunction...}, "examples": [...]}, or a list of them."""
    from slm.eval.c_io import CFunction
    from slm.recipes.slade.generator import GeneratedFunction

    out = []
    for path in paths:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"user function file {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e})") from None
        for i, item in enumerate(raw if isinstance(raw, list) else [raw]):
            try:
                out.append(GeneratedFunction(CFunction.from_dict(item["fn"]), list(item["examples"]), "user"))
            except (KeyError, TypeError) as e:
                raise ConfigError(f"{path}: function {i} needs fn (name, return_type, params, source) and "
                                  f"examples ({e})") from None
    return out


def build_dataset(settings: dict, root: Path, targets: list[tuple[str, str]], say=print) -> dict:
    """Generate (or read back) the functions, compile them for every target, dedup, split. See the module doc.

    settings: functions (count), seed, examples (IO examples per function), families (None: all),
    test_functions, user_files, real_functions (how many of slade.real's harvest, or "all"; 0: none),
    real_test_functions (of those, how many are held out), asm_chars (longest assembly kept, in characters)."""
    from tqdm import tqdm

    from slm.eval.c_io import IOHarness
    from slm.io import atomic_write_text
    from slm.recipes.slade.assembly import compile_functions
    from slm.recipes.slade.generator import generate

    key = _key({**settings, "targets": targets})
    path = root / "data" / f"dataset-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    made = generate(settings["functions"], seed=settings["seed"], n_examples=settings["examples"],
                    families=settings.get("families"))
    origins = ["generated"] * len(made)
    user = load_user_functions(settings.get("user_files", []))
    for g in user:  # a user function must compile and run on its examples before it is data
        try:
            IOHarness(g.fn, g.examples)
        except SlmError as e:
            raise ConfigError(f"user function {g.fn.name}: {e}") from None
    made += user
    origins += ["user"] * len(user)
    if settings.get("real_functions", 0):  # harvested from real C sources (slade.real), reported apart
        from slm.recipes.slade.real import load_real

        count = settings["real_functions"]
        real = load_real(None if count == "all" else int(count), seed=settings["seed"])
        made += real
        origins += ["real"] * len(real)
    asm: dict[tuple[str, str], list] = {}
    for isa, opt in tqdm(targets, desc="slade: compiling", unit="target", disable=len(made) < 200):
        asm[(isa, opt)] = compile_functions([g.fn for g in made], isa, opt)
    functions, rows, seen = [], [], set()
    limit = settings.get("asm_chars", 4000)
    for i, g in enumerate(made):
        bodies = tuple(asm[t][i] for t in targets)
        if any(b is None or len(b) > limit for b in bodies) or bodies in seen:
            continue  # did not compile, too long for the model, or the same assembly as an earlier function
        seen.add(bodies)
        index = len(functions)
        functions.append({"fn": g.fn.to_dict(), "examples": g.examples, "family": g.family, "origin": origins[i]})
        rows += [{"function": index, "family": g.family, "origin": origins[i], "isa": isa, "opt": opt,
                  "asm": body, "c": g.fn.source} for (isa, opt), body in zip(targets, bodies)]
    order = list(range(len(functions)))
    random.Random(settings["seed"] + 1).shuffle(order)
    n_test = settings["test_functions"]
    user_ids = [i for i in order if functions[i]["origin"] == "user"]
    test = set(user_ids[: max(1, len(user_ids) // 2)] if user_ids else [])  # half the user functions, if any
    test |= set([i for i in order if functions[i]["origin"] == "generated"][:n_test])
    test |= set([i for i in order if functions[i]["origin"] == "real"][:settings.get("real_test_functions", 0)])
    if len(test) >= len(functions):
        raise ConfigError(f"test_functions {n_test} leaves nothing to train on ({len(functions)} functions kept)")
    data = {"functions": functions, "targets": targets,
            "train": [r for r in rows if r["function"] not in test],
            "test": [r for r in rows if r["function"] in test],
            "dropped": len(made) - len(functions)}
    say(f"slade data: {len(functions)} functions kept of {len(made)} ({len(test)} test), "
        f"{len(data['train'])} training and {len(data['test'])} test rows over {len(targets)} targets")
    atomic_write_text(path, json.dumps(data) + "\n")
    return data
