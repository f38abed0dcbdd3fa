"""Vision-to-language connectors (projector-side modules)."""
