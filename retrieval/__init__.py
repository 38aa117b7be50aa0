"""Find text: load documents, chunk them, embed them, index them and search them.

This package imports nothing from builder/, finetune/, eval/ or apps/.
"""
