"""Instruction templates per task (data, in ``instructions.yaml``) and the one renderer."""
