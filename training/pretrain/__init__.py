"""Pretraining the tiny model's parts on the sample world, since nothing may be downloaded: an LLM
that already looks things up by content (``llm``) and a vision tower whose patch tokens name
objects (``vision``), each a ``save_pretrained`` folder the tiny preset loads like a real
checkpoint."""
