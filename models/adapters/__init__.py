"""Parameter-efficient adapters for the LLM (Dual-LoRA)."""
