"""slm finetune: supervised fine-tuning (full or LoRA) on JSONL conversations, through the one trainer."""
from __future__ import annotations

import argparse

from slm.cli import MODEL_SOURCE


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"the model to fine-tune (with its tokenizer): {MODEL_SOURCE}")
    p.add_argument("--data", help="training JSONL: {'messages': [...]} or {'prompt', 'completion'} per line")
    p.add_argument("--out", help="run directory: checkpoints/, metrics.jsonl (default runs/finetune)")
    p.add_argument("--recipe", help="a YAML recipe (sections model, out, data, lora, train); flags override it")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="dotted overrides applied last, e.g. train.lr=1e-4 data.seq_len=256")
    p.add_argument("--task", choices=["sft", "seq2seq", "classify"],
                   help="sft: chat SFT of a decoder (default); seq2seq: an encoder-decoder (T5) on JSONL "
                        "{'input', 'target'} pairs (chosen by itself for a t5 checkpoint); classify: sequence "
                        "classification of an encoder on JSONL/CSV with text, optional text_pair, label (metrics acc, "
                        "macro-F1, MCC on --val-data)")
    g = p.add_argument_group("data")
    g.add_argument("--val-data", help="held-out JSONL for the validation loss")
    g.add_argument("--val-fraction", type=float, help="hold out this fraction of --data instead")
    g.add_argument("--seq-len", type=int, help="tokens per row (default: the longest example rounded up to 64, at most "
                   "the model's max_seq_len)")
    g.add_argument("--batch-size", type=int, help="rows per micro-batch (default 8)")
    g.add_argument("--no-pack", action="store_true", help="one example per row, padded, instead of packing")
    g.add_argument("--pack-strategy", choices=["bfd", "greedy"], help="bin packing: best-fit decreasing or next-fit")
    g.add_argument("--overlong", choices=["truncate", "drop", "error"],
                   help="examples longer than --seq-len (default truncate; encoder-decoders: error)")
    g.add_argument("--train-on", choices=["assistant", "all"], help="loss on assistant tokens only (default) or all")
    g.add_argument("--on-bad-line", choices=["error", "skip"],
                   help="a malformed JSONL line stops the run (default) or is skipped with a warning")
    g.add_argument("--chat-template", help="Jinja file to render conversations with (default: the tokenizer's)")
    g = p.add_argument_group("LoRA")
    g.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights")
    g.add_argument("--lora-r", type=int, help="LoRA rank (default 8)")
    g.add_argument("--lora-alpha", type=float, help="LoRA alpha (default 16)")
    g.add_argument("--lora-targets", help="comma-separated module names (default: every linear layer of the blocks)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, help="optimizer steps (default 200)")
    g.add_argument("--lr", type=float, help="peak learning rate (default 2e-4)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 (default auto)")
    g.add_argument("--save-every", type=int, help="checkpoint every N steps (default: only at the end)")
    g.add_argument("--eval-every", type=int, help="validation loss every N steps (default: only at the end)")
    g.add_argument("--resume", help="'auto' continues from the newest checkpoint in --out, or a checkpoint path")
    g = p.add_argument_group("demo data")
    g.add_argument("--write-demo-data", metavar="FILE.jsonl",
                   help="write the demo SFT set (stdlib docstring <-> function pairs) to FILE and exit")
    g.add_argument("--demo-split", choices=["train", "heldout"], default="train", help="which split to write")
    g.add_argument("--demo-files", type=int, default=200, help="stdlib files to draw demo functions from")
    g.add_argument("--demo-task", choices=["docstring-package", "docstring-signature"], default="docstring-package",
                   help="with --task classify: which embedded classification task --write-demo-data writes "
                        "(--demo-split train or heldout)")
    # Flags left out must not override the recipe: they stay unset (and help shows no "default: None").
    for action in p._actions:
        if action.default is None:
            action.default = argparse.SUPPRESS
    p.set_defaults(func=run)


# flag -> dotted config key; a flag that was given overrides the recipe, --set overrides both.
_FLAG_KEYS = {"model": "model", "out": "out", "data": "data.path", "val_data": "data.val_path",
              "val_fraction": "data.val_fraction", "seq_len": "data.seq_len", "batch_size": "data.batch_size",
              "pack_strategy": "data.strategy", "overlong": "data.overlong", "train_on": "data.train_on",
              "on_bad_line": "data.on_bad_line", "chat_template": "data.chat_template", "steps": "train.max_steps",
              "lr": "train.lr", "device": "train.device", "save_every": "train.save_every",
              "eval_every": "train.eval_every", "lora_r": "lora.r", "lora_alpha": "lora.alpha"}


def _config_dict(args) -> dict:
    from slm.config import apply_overrides, load_recipe

    data = load_recipe(args.recipe) if args.recipe else {}
    values = {key: getattr(args, flag) for flag, key in _FLAG_KEYS.items() if getattr(args, flag) is not None}
    if args.no_pack:
        values["data.pack"] = False
    if args.lr is not None and "min_lr" not in data.get("train", {}):
        values["train.min_lr"] = args.lr / 10
    if args.lora_targets:
        values["lora.target_modules"] = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
    if args.lora or any(key.startswith("lora.") for key in values):
        data["lora"] = data.get("lora") or {}  # an empty section means LoRA with default settings
    for key, value in values.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return apply_overrides(data, args.set)


_OPTIONAL = ["task", "model", "data", "out", "recipe", "val_data", "val_fraction", "seq_len", "batch_size", "pack_strategy",
             "overlong", "train_on", "on_bad_line", "chat_template", "lora_r", "lora_alpha", "lora_targets", "steps",
             "lr", "device", "save_every", "eval_every", "resume", "write_demo_data"]


def run(args) -> int:
    args = argparse.Namespace(**{**{name: None for name in _OPTIONAL}, **vars(args)})
    if args.task == "classify":
        return _classify(args)
    if args.write_demo_data:
        from slm.finetune.demo_data import write_demo_dataset

        n = write_demo_dataset(args.write_demo_data, files=args.demo_files, split=args.demo_split)
        print(f"wrote {n} {args.demo_split} conversations to {args.write_demo_data}")
        return 0
    from slm.finetune.run import build_config, finetune

    cfg, train_cfg = build_config(_config_dict(args))
    finetune(cfg, train_cfg, resume=args.resume, task=args.task)
    return 0


def _classify(args) -> int:
    """`slm finetune --task classify`: the same flags where they apply (model, data, val-data, out, steps, lr, ...)."""
    from slm.config import build
    from slm.finetune.classify import ClassifyConfig, finetune_classifier

    if args.write_demo_data:
        from slm.finetune.classify_data import write_task

        split = "test" if args.demo_split == "heldout" else "train"
        n = write_task(args.write_demo_data, args.demo_task, split)
        print(f"wrote {n} {args.demo_task} {split} examples to {args.write_demo_data}")
        return 0
    data = _config_dict(args)
    data.pop("lora", None)
    sft_data = data.pop("data", {}) or {}
    fields = dict(data=sft_data.get("path", ""), val_data=sft_data.get("val_path"), train=data.pop("train", {}) or {})
    for key in ("seq_len", "batch_size"):
        if key in sft_data:
            fields[key] = sft_data[key]
    if "overlong" in sft_data:
        fields["overlong"] = sft_data["overlong"]
    cfg = build(ClassifyConfig, {**data, **fields})
    finetune_classifier(cfg, resume=args.resume)
    return 0
