"""Composition: the commands' programs, wiring a source or the ingest server, the runtime and
publishers into ``run``, ``serve``, ``gateway`` and ``report``."""
