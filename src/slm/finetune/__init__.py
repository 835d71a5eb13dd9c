"""Fine-tuning: SFT data rendered through chat templates, contamination-free packing, LoRA via peft.

    examples, report = load_sft_examples("chat.jsonl", tokenizer)        # labels on assistant tokens only
    batches = SFTBatches(examples, seq_len=512, batch_size=8, pad_id=tokenizer.pad_token_id)
    model = apply_lora(model, LoraSettings(r=8))                         # optional
    save_merged(model, tokenizer, "out/merged")                          # a plain HF directory

Training itself runs through slm.train.Trainer (`slm finetune`); there is no second loop here.
"""
from slm.finetune.data import IGNORE, LoadReport, Renderer, SFTExample, load_sft_examples, read_jsonl
from slm.finetune.lora import LoraSettings, apply_lora, is_lora, merged_copy, save_adapter, save_merged
from slm.finetune.packing import SFTBatches, collate_packed, collate_padded, plan_bins

__all__ = ["IGNORE", "LoadReport", "LoraSettings", "Renderer", "SFTBatches", "SFTExample", "apply_lora",
           "collate_packed", "collate_padded", "is_lora", "load_sft_examples", "merged_copy", "plan_bins",
           "read_jsonl", "save_adapter", "save_merged"]
