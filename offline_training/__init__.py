"""Offline trainer: corpora -> cached frozen-encoder features -> fusion heads -> bundles.

Entry point: ``emotion-train`` (``offline_training.cli``). See docs/training.md.
"""
