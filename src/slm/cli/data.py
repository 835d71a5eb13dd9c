"""slm data prepare|info"""
from __future__ import annotations

import argparse

from slm.cli import add_subverbs


def register(p: argparse.ArgumentParser) -> None:
    add_subverbs(p, {
        "prepare": ("tokenize sources into token shards with a train/validation split", _register_prepare),
        "info": ("describe a prepared data directory (tokenizer, splits, counts, sources)", _register_info),
    })


def _register_prepare(p):
    p.add_argument("output", help="data directory to write (replaced atomically if it exists)")
    p.add_argument("--tokenizer", required=True, metavar="DIR",
                   help="tokenizer directory (or a model directory holding one); the model must use the same")
    src = p.add_argument_group("sources (any mix, read in this order: --source, --jsonl, --parquet, --hf-dataset; "
                               "none means the embedded stdlib corpus)")
    src.add_argument("--source", action="append", default=[], metavar="stdlib|PATH",
                     help="'stdlib' (the Python standard library source), a folder of text/code files, or a file")
    src.add_argument("--glob", action="append", default=[], metavar="PATTERN",
                     help="for folder sources: only files matching these glob patterns (e.g. '**/*.py')")
    src.add_argument("--limit-files", type=int, default=None, help="stdlib source: at most this many files")
    src.add_argument("--jsonl", action="append", default=[], metavar="FILE", help="a JSON Lines file")
    src.add_argument("--field", default="text", help="the text field of --jsonl and --hf-dataset records")
    src.add_argument("--skip-bad-lines", action="store_true",
                     help="warn about and skip malformed JSONL lines instead of stopping at the first")
    src.add_argument("--parquet", action="append", default=[], metavar="FILE",
                     help="a parquet file (or a folder of them)")
    src.add_argument("--column", default="text", help="the text column of --parquet files")
    src.add_argument("--hf-dataset", action="append", default=[], metavar="NAME_OR_PATH",
                     help="a Hugging Face dataset: hub name (online), local dataset folder, or json/parquet/csv file")
    src.add_argument("--split", default="train", help="the split of --hf-dataset to read")
    src.add_argument("--hf-config", default=None, help="the configuration name of --hf-dataset")
    p.add_argument("--val-fraction", type=float, default=0.01, help="share of documents for the validation split")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument("--workers", type=int, default=2, help="tokenizer processes (1 = in this process)")
    p.add_argument("--no-dedup", dest="dedup", action="store_false", help="keep exact duplicate documents")
    p.add_argument("--no-eos", dest="append_eos", action="store_false", help="do not end documents with eos")
    p.add_argument("--shard-tokens", type=int, default=None, help="tokens per shard file (default 256M)")
    p.set_defaults(func=prepare)


def _register_info(p):
    p.add_argument("data", help="a prepared data directory")
    p.add_argument("--json", action="store_true", help="print the whole index as JSON")
    p.set_defaults(func=info)


def _sources(args) -> list[tuple[str, str, dict]]:
    from pathlib import Path

    from slm.errors import SlmError

    specs = []
    for item in args.source:
        if item == "stdlib":
            specs.append(("stdlib", "", {"limit": args.limit_files}))
        elif Path(item).is_dir():
            specs.append(("folder", item, {"patterns": args.glob}))
        elif Path(item).is_file():
            specs.append(("file", item, {}))
        else:
            raise SlmError(f"--source {item}: not 'stdlib', a folder or a file")
    specs += [("jsonl", f, {"field": args.field, "skip_bad": args.skip_bad_lines}) for f in args.jsonl]
    specs += [("parquet", f, {"column": args.column}) for f in args.parquet]
    specs += [("hf", d, {"split": args.split, "field": args.field, "config": args.hf_config})
              for d in args.hf_dataset]
    return specs or [("stdlib", "", {"limit": args.limit_files})]


def prepare(args) -> int:
    import itertools

    from slm.data.shards import DEFAULT_SHARD_TOKENS, prepare
    from slm.data.sources import open_source

    specs = _sources(args)
    described = [" ".join(filter(None, [kind, target, *(f"{k}={v}" for k, v in sorted(opts.items()) if v)]))
                 for kind, target, opts in specs]
    documents = itertools.chain.from_iterable(open_source(kind, target, **opts) for kind, target, opts in specs)
    index = prepare(documents, args.tokenizer, args.output, val_fraction=args.val_fraction, seed=args.seed,
                    workers=args.workers, dedup=args.dedup, append_eos=args.append_eos,
                    shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS, description=described)
    print(_summary(index, args.output))
    if args.val_fraction > 0 and index["splits"]["val"]["documents"] == 0:
        print(f"warning: no document fell in the validation split ({args.val_fraction:g} of "
              f"{index['splits']['train']['documents']} documents); raise --val-fraction to get one")
    return 0


def info(args) -> int:
    import json

    from slm.data.shards import read_index

    index = read_index(args.data)
    print(json.dumps(index, indent=2) if args.json else _summary(index, args.data))
    return 0


def _summary(index: dict, where) -> str:
    tok, counts = index["tokenizer"], index["counts"]
    bos = "added" if tok["adds_bos"] else "not added"
    eos = "appended" if index["append_eos"] else "not appended"
    lines = [f"data:       {where}",
             f"tokenizer:  {tok['name']} ({tok['vocab_size']} tokens, fingerprint {tok['fingerprint'][:12]}; "
             f"bos {bos}, eos {eos})",
             f"dtype:      {index['dtype']}",
             f"documents:  {counts['documents_read']} read, {counts['duplicates_removed']} duplicates removed, "
             f"{counts['empty_skipped']} empty skipped"]
    for name, split in index["splits"].items():
        lines.append(f"{name + ':':11} {split['documents']} documents, {split['tokens']:,} tokens in "
                     f"{len(split['shards'])} shard(s)")
    lines += [f"source:     {s}" for s in index["sources"]]
    return "\n".join(lines)
