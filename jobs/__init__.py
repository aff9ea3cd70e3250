"""Thin job entry points: each module parses a typed, frozen config and calls ``mmsrarec_lib``."""
