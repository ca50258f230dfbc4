"""Emotion models: encoders, fusion heads, bundles, and the inference entry point."""
