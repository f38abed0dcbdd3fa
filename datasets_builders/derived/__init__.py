"""Datasets built from our own committed datasets (multi-round conversations, blends), not raw folders."""
