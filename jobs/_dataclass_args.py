"""CLI flags generated from a frozen config dataclass, so each setting (name, type, default, help) is declared
once, in ``mmsrarec_lib`` (the HfArgumentParser idea, without its dependencies).

A field ``top_m: int = field(default=50, metadata={"help": "..."})`` becomes ``--top-m INT`` (default 50, the help
text plus the default); ``bool`` fields become ``--name/--no-name`` (a field named ``no_x``: ``--no-x`` alone);
``Literal[...]`` fields get ``choices``; ``X | None`` fields accept a value or default to None; ``bool | None``
fields take ``auto|yes|no`` (auto = None); ``tuple[str, ...]`` fields take a comma list. ``names`` keeps an
existing flag name where it differs from the field (``names={"n": "window"}`` gives ``--window`` for
``WindowConfig.n``); ``extra_help`` gives help job-side for a field whose dataclass has no
``metadata={"help": ...}`` (a library file another team owns).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


TRI_STATE = {"auto": None, "yes": True, "no": False}


def _flag(name: str, prefix: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _base_type(tp: Any) -> tuple[Any, list | None]:
    """(python type used to parse the value, choices or None) of a resolved field type."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = list(typing.get_args(tp))
        return type(choices[0]), choices
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _base_type(args[0])
    if origin is tuple:
        return comma_list, None
    return tp, None


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def tri_state(text: str) -> bool | None:
    """``auto|yes|no`` -> None/True/False."""
    try:
        return TRI_STATE[text]
    except KeyError:
        raise argparse.ArgumentTypeError(f"choose from auto, yes, no (got {text!r})") from None


def device_field() -> Any:
    """The ``--device`` setting every job that can run on a GPU declares the same way."""
    return dataclasses.field(default=None, metadata={"help": "cpu, cuda, cuda:0 (None: cuda when present)"})


def _shown(default: Any) -> Any:
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "none"
    return default


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
                            skip: tuple[str, ...] = (), names: Mapping[str, str] | None = None,
                            extra_help: Mapping[str, str] | None = None) -> None:
    """One flag per field of ``cls`` (except ``skip``), with the field's default and metadata help."""
    hints = typing.get_type_hints(cls)
    names, extra_help = names or {}, extra_help or {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_ = f.metadata.get("help") or extra_help.get(f.name, "")
        flag = "--" + names[f.name] if f.name in names else _flag(f.name, prefix)
        text = f"{help_} (default {_shown(default)})".strip()
        tp, choices = _base_type(hints[f.name])
        if tp is bool and _is_optional(hints[f.name]):
            parser.add_argument(flag, dest=prefix + f.name, type=tri_state, default=default, metavar="{auto,yes,no}",
                                help=text.replace("(default None)", "(default auto)"))
            continue
        if tp is bool:  # --x/--no-x, except a field already named no_x: --no-x alone (argparse reads --no-* as off)
            action = "store_true" if flag.startswith("--no-") else argparse.BooleanOptionalAction
            parser.add_argument(flag, dest=prefix + f.name, default=default, action=action, help=text)
            continue
        parser.add_argument(flag, dest=prefix + f.name, type=tp, choices=choices, default=default,
                            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                            help=text)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, *, prefix: str = "", **overrides: Any) -> T:
    """An instance of ``cls`` from the parsed flags (plus ``overrides`` for skipped fields)."""
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
              if f.init and hasattr(args, prefix + f.name) and f.name not in overrides}
    return cls(**{**values, **overrides})
