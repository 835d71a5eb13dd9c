"""The CLI: every verb explains itself; every user error is one clear line and a non-zero exit."""
import re
import subprocess
import sys

import pytest

from slm.cli import VERBS, build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_lists_every_verb():
    out = subprocess.run([sys.executable, "-m", "slm", "--help"], capture_output=True, text=True, check=True).stdout
    for verb, _, _ in VERBS:
        assert verb in out


def _all_parsers(parser, prefix=()):
    import argparse

    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, prefix + (name,))


@pytest.mark.parametrize("path", [p for p, _ in _all_parsers(build_parser()) if p], ids=" ".join)
def test_every_verb_has_help(path, capsys):
    parser = dict(_all_parsers(build_parser()))[path]
    passthrough = parser.prefix_chars == "\0"  # e.g. `slm lm-eval`: every argument, --help too, goes to the wrapped tool
    try:
        code = main([*path, "--help"])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: " if passthrough else "usage: slm " + " ".join(path))
    assert len(out.splitlines()) > 3
    # Defaults are shown once and only when there is one: no "(default: None)", no help that says it twice.
    flat = " ".join(out.split())
    assert "(default: None)" not in flat and not re.search(r"\(default[^)]*\) \(default", flat)


@pytest.mark.parametrize("argv, message", [
    (["model", "info", "gpt-9"], "neither a model directory nor a preset"),
    (["model", "init", "nano", "{tmp}/m", "--set", "n_heads=3"], "must divide dim"),
    (["model", "init", "nano", "{tmp}/m", "--set", "n_layerz=3"], "unknown key"),
    (["convert", "{tmp}/missing", "{tmp}/out"], "model directory not found"),
    (["tokenizer", "info", "{tmp}"], "has no tokenizer"),
    (["tokenizer", "train", "{tmp}/tok", "--input", "{tmp}/nothing.txt"], "input not found"),
])
def test_user_errors_are_one_line(argv, message, capsys, tmp_path):
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_tokenizer_model_convert_round_trip(capsys, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    from slm.data.sources import stdlib_files

    for f in stdlib_files(8):
        (corpus / f.name).write_text(f.read_text())
    code, out, _ = run(capsys, "tokenizer", "train", str(tmp_path / "tok"), "--input", str(corpus), "--vocab-size", "700")
    assert code == 0 and "700 tokens" in out
    code, out, _ = run(capsys, "tokenizer", "encode", str(tmp_path / "tok"), "def f(): pass")
    assert code == 0 and "'def f(): pass'" in out
    code, out, _ = run(capsys, "model", "init", "nano", str(tmp_path / "m"), "--tokenizer", str(tmp_path / "tok"),
                       "--set", "n_layers=1")
    assert code == 0
    code, out, _ = run(capsys, "model", "info", str(tmp_path / "m"))
    assert code == 0 and "1 layers" in out and "vocab 700" in out
    code, out, _ = run(capsys, "convert", str(tmp_path / "m"), str(tmp_path / "bf16"), "--dtype", "bfloat16")
    assert code == 0

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    assert hf.dtype == torch.bfloat16
    assert AutoTokenizer.from_pretrained(tmp_path / "bf16").encode("x = 1") == \
        AutoTokenizer.from_pretrained(tmp_path / "tok").encode("x = 1")


def test_model_info_of_a_big_preset_needs_no_memory(capsys):
    code, out, _ = run(capsys, "model", "info", "tinyllama-1.1b")
    assert code == 0
    assert "1,100,048,384" in out and "4 KV" in out and "GFLOP" in out
