"""Layered LightningCLI configs: a base config per method plus small override files.

An override file names the file(s) it builds on with a top-level ``__base__`` key (a path, or
a list of paths, relative to the override file's folder); everything else in it is applied on
top, in order::

    # experiments/quick/deep3d_ablation_per.yaml
    __base__: deep3d.yaml
    model:
      init_args:
        perceptual: idnet
        loss_weights: {photo: 0.0, landmark: 0.0}

Bases may have bases of their own (resolved depth first, a cycle is an error).

* ``b3f fit|validate|test|predict --config FILE`` expands ``FILE`` into one ``--config`` per
  layer (:func:`expand_config_args`), so LightningCLI does the merging itself, exactly as for
  ``--config base.yaml --config override.yaml`` (several ``--config`` work too, applied in
  order).
* :func:`resolve_config` merges the layers as plain YAML, for code that reads configs without
  LightningCLI (the benchmark runner, scripts), with LightningCLI's rules
  (:func:`merge_configs`): sections (``model``, ``data``, ``trainer``, ...) and the
  ``init_args`` of an unchanged ``class_path`` merge argument by argument; an argument's value
  replaces the base's whole -- a list such as ``trainer.callbacks`` or a dict such as
  ``loss_weights`` is restated in full by the override; an override may not change a
  ``class_path`` (a ``ValueError``). ``tests/training/test_configs.py`` checks it against
  LightningCLI on every shipped config. (Dataclass-typed arguments, which LightningCLI merges
  field by field, are not used by the shipped configs and are replaced here.)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

#: top-level key of an override file naming its base file(s)
BASE_KEY = "__base__"
#: the LightningCLI options that take a config file
CONFIG_FLAGS = ("--config", "-c")


def read_yaml_file(path: str | Path, what: str, hint: str = "", label: str | None = None) -> Any:
    """A YAML file's content; a missing file or invalid YAML is one line naming the file
    (``FileNotFoundError`` / ``ValueError``). ``what`` names the file's role in the not-found
    message (plus ``hint``), ``label`` how the file is named in the YAML message."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} not found{hint}")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{label or p}: not valid YAML ({str(exc).splitlines()[0]})") from exc


def read_layer(path: str | Path) -> tuple[dict[str, Any], list[Path]]:
    """One config file: ``(its mapping without __base__, its base files as absolute paths)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not YAML, not a mapping, or ``__base__`` is not a path / list of paths.
    """
    p = Path(path)
    data = read_yaml_file(p, "config", label=f"config {p}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config {p}: expected a mapping at the top level, got {type(data).__name__}")  # noqa: TRY004
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data, []
    names = [base] if isinstance(base, str) else base
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"config {p}: {BASE_KEY} must be a file name or a list of file names, got {base!r}")
    # absolute, links kept (experiments/quick/deep3d.yaml stays that name, not its target)
    return data, [Path(os.path.normpath(p.parent.absolute() / n)) for n in names]


def config_chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[Path]:
    """The files a config is made of, base first and ``path`` last (``__base__`` followed
    depth first; a base listed twice is kept once, at its first place).

    Raises:
        FileNotFoundError: naming the file whose ``__base__`` is missing.
        ValueError: a ``__base__`` cycle, or a file that is not a YAML mapping.
    """
    p = Path(path)
    key = p.resolve()
    if key in _seen:
        raise ValueError(f"config {p}: {BASE_KEY} cycle ({' -> '.join(str(s) for s in (*_seen, key))})")
    _, bases = read_layer(p)
    chain: list[Path] = []
    for base in bases:
        if not base.is_file():
            raise FileNotFoundError(f"config {p}: its {BASE_KEY} {base} not found")
        for f in config_chain(base, (*_seen, key)):
            if f not in chain:
                chain.append(f)
    chain.append(p)
    return chain


def _is_subclass_node(value: Any) -> bool:
    return isinstance(value, Mapping) and ("class_path" in value or "init_args" in value)


def _merge_arguments(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments (a section such as ``trainer``, or an ``init_args``): each value
    replaces the base's, except a class spec (``class_path`` / ``init_args``) on top of one."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = out.get(key)
        out[key] = (_merge_class(old, value) if _is_subclass_node(old) and _is_subclass_node(value)
                    else copy.deepcopy(value))
    return out


def _merge_class(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A class spec on another with the same (or no) ``class_path``: ``init_args`` merge
    argument by argument.

    Raises:
        ValueError: the override changes the ``class_path`` (LightningCLI then keeps the base's
            arguments that the new class accepts, which needs the class's signature).
    """
    if "class_path" in override and base.get("class_path") and override["class_path"] != base["class_path"]:
        raise ValueError(f"changes class_path from {base['class_path']} to {override['class_path']}; an override "
                         f"file may only change arguments (state the new class in a base config of its own)")
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if key == "init_args" and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_arguments(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_configs(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` applied on ``base`` the way LightningCLI applies a second ``--config`` (new
    dict; inputs untouched): top-level sections merge key by key; inside a section or an
    ``init_args`` every argument value replaces the base's -- scalars, lists (e.g.
    ``trainer.callbacks``), ``null`` and dict-valued arguments (e.g. ``loss_weights``) alike --
    except a class spec, which merges its ``init_args`` (its ``class_path`` must not change:
    ``ValueError``)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = out.get(key)
        if _is_subclass_node(old) and _is_subclass_node(value):
            out[key] = _merge_class(old, value)
        elif isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge_arguments(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config(paths: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """The merged config of one file (with its ``__base__`` chain) or of several files
    applied in order (as ``--config A --config B``).

    Raises:
        FileNotFoundError / ValueError: naming the file and the problem.
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: dict[str, Any] = {}
    for item in items:
        for f in config_chain(item):
            try:
                out = merge_configs(out, read_layer(f)[0])
            except ValueError as exc:
                raise ValueError(f"config {f}: {exc}") from None
    return out


def expand_config_args(argv: Sequence[str]) -> list[str]:
    """LightningCLI arguments with every ``--config FILE`` whose file has a ``__base__`` replaced
    by one ``--config`` per layer: the base files, then the file's own keys (passed as YAML
    text, which ``--config`` accepts, since LightningCLI rejects the ``__base__`` key).
    Other arguments, and config files without ``__base__``, are kept as they are."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, value = arg.partition("=")
        if flag in CONFIG_FLAGS and (eq or i + 1 < len(args)):
            if not eq:
                i += 1
                value = args[i]
            out += _expand_one(flag, value)
        else:
            out.append(arg)
        i += 1
    return out


def _expand_one(flag: str, value: str) -> list[str]:
    p = Path(value)
    if not p.is_file():  # YAML text, or a missing file: LightningCLI reports it
        return [flag, value]
    chain = config_chain(p)
    if len(chain) == 1:
        return [flag, value]
    out: list[str] = []
    for f in chain[:-1]:
        data, bases = read_layer(f)
        out += [flag, str(f)] if not bases else ([flag, yaml.safe_dump(data, sort_keys=False)] if data else [])
    own = read_layer(p)[0]
    if own:
        out += [flag, yaml.safe_dump(own, sort_keys=False)]
    return out


__all__ = ["BASE_KEY", "config_chain", "expand_config_args", "merge_configs", "read_layer", "resolve_config"]
