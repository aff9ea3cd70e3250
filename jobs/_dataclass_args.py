"""CLI flags generated from a frozen config dataclass, so each setting (name, type, default, help) is declared
once, in ``mmsrarec_lib`` (the HfArgumentParser idea, without its dependencies).

A field ``top_m: int = field(default=50, metadata={"help": "..."})`` becomes ``--top-m INT`` (default 50, the help
text plus the default); ``bool`` fields become ``--name/--no-name``; ``Literal[...]`` fields get ``choices``;
``X | None`` fields accept a value or default to None.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str, prefix: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, list | None]:
    """(python type used to parse the value, choices or None) of a resolved field type."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = list(typing.get_args(tp))
        return type(choices[0]), choices
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _base_type(args[0])
    return tp, None


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
                            skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` (except ``skip``), with the field's default and metadata help."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_ = f.metadata.get("help", "")
        tp, choices = _base_type(hints[f.name])
        if tp is bool:
            parser.add_argument(_flag(f.name, prefix), dest=prefix + f.name, default=default,
                                action=argparse.BooleanOptionalAction, help=f"{help_} (default {default})".strip())
            continue
        parser.add_argument(_flag(f.name, prefix), dest=prefix + f.name, type=tp, choices=choices, default=default,
                            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                            help=f"{help_} (default {default})".strip())


def dataclass_from_args(cls: type[T], args: argparse.Namespace, *, prefix: str = "", **overrides: Any) -> T:
    """An instance of ``cls`` from the parsed flags (plus ``overrides`` for skipped fields)."""
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
              if f.init and hasattr(args, prefix + f.name)}
    return cls(**{**values, **overrides})
