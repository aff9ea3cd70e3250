"""Stage 3 of MMSRARec: prompts, instruction tasks, LoRA fine-tuning, shared-prefix scoring, top-K, evaluation."""
