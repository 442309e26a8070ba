"""`_target_` nodes: how the config names a constructor, checked before anything is built.

A node names something importable (`_target_: torch.optim.AdamW`) and the keyword
arguments the config gives it; the framework supplies the rest where the callable's
signature takes them (a model's `num_classes`, the parameters an optimizer updates, a
schedule's run length). Hydra's `instantiate` builds it. `check` answers in one line,
before any data is read, what would make the build fail: a target that does not import,
a key the signature does not take, an argument nobody gives.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.errors import ConfigError

# Keys Hydra reads itself; the rest of a node are the callable's arguments.
HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


def is_node(value: Any) -> bool:
    """Whether `value` is a `_target_` node (a mapping that names a callable)."""
    return isinstance(value, (Mapping, DictConfig)) and "_target_" in value


def locate(key: str, node: Any) -> Callable[..., Any]:
    """The callable that `node._target_` names.

    Raises:
        ConfigError: the node has no `_target_`, or it does not import.
    """
    if not is_node(node):
        raise ConfigError(f"{key} is invalid: it needs a _target_ (the class or function to call)")
    path = node["_target_"]
    hydra_log = logging.getLogger("hydra.utils")  # it logs the failure in 3 lines; we say it in 1
    hydra_log.disabled = True
    try:
        found = get_object(str(path))
    except Exception as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = exc.__cause__
        if cause is not None and str(cause).strip():  # Hydra wraps the ImportError
            why = str(cause).strip().splitlines()[0]
        module, _, name = str(path).rpartition(".")
        if module and importlib.util.find_spec(module.split(".")[0]) is not None:
            try:
                importlib.import_module(module)
                why = f"{module} has no {name!r}"
            except Exception:  # the module itself fails: Hydra's reason stands
                pass
        raise ConfigError(
            f"{key}._target_={path!r} is invalid: it does not import ({why})"
        ) from None
    finally:
        hydra_log.disabled = False
    if not callable(found):
        raise ConfigError(f"{key}._target_={path!r} is invalid: it is not a class or function")
    return found


def signature(fn: Callable[..., Any]) -> tuple[list[inspect.Parameter], bool]:
    """The parameters a caller may name, and whether it also takes any keyword (**kwargs)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: take it on trust
        return [], True
    named = [
        p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
    ]
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def names_parameter(fn: Callable[..., Any], name: str) -> bool:
    """Whether `fn`'s signature names the parameter `name` (not through **kwargs): the
    framework supplies an argument only to a callable that asks for it."""
    return any(p.name == name for p in signature(fn)[0])


def arguments(node: Any, own: Sequence[str] = ()) -> list[str]:
    """The node's keys that go to its callable: all but Hydra's and the framework's `own`."""
    return [str(k) for k in node if k not in HYDRA_KEYS and k not in own]


def check(
    key: str,
    node: Any,
    supplied: Sequence[str] = (),
    positional: int = 0,
    own: Sequence[str] = (),
) -> Callable[..., Any]:
    """Fail now, in one line, where building `node` would fail later.

    key: the node's place in the config (`model`, `optimizer`), named in errors.
    supplied: keyword arguments the framework passes when the callable takes them.
    positional: leading arguments the framework passes by position (an optimizer's
        parameters, a schedule's optimizer).
    own: keys of the node the framework reads itself rather than passing on.

    Returns the callable. Raises ConfigError naming the key, its value, and what the
    callable takes (the closest name first).
    """
    fn = locate(key, node)
    named, anything = signature(fn)
    names = [p.name for p in named]
    label = node["_target_"]
    given = arguments(node, own)
    if not anything:
        for name in given:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}? " if close else ""
                taken = ", ".join(n for n in names[positional:] if n not in supplied)
                raise ConfigError(
                    f"{key}.{name}={_shown(node[name])} is invalid: {label} takes no argument "
                    f"{name!r}; {hint}it takes: {taken or 'nothing more'}"
                )
    needed = [
        p.name
        for p in named[positional:]
        if p.default is inspect.Parameter.empty and p.name not in given and p.name not in supplied
    ]
    if needed:
        raise ConfigError(
            f"{key}.{needed[0]} is missing: {label} needs it (add {key}.{needed[0]}=VALUE, "
            f"or +{key}.{needed[0]}=VALUE where the preset has no such key)"
        )
    return fn


def build(
    node: Any, *args: Any, key: str = "config", own: Sequence[str] = (), **supplied: Any
) -> Any:
    """Call the node's target through Hydra's `instantiate`, with `args` by position and
    those of `supplied` its signature names; the node's `own` keys are left out. `key`
    is the node's place in the config, named in errors.

    Nested `_target_` nodes are built first (Hydra's recursion); lists and dicts arrive as
    plain Python containers, so nothing OmegaConf-typed ends up in a state_dict.
    """
    container = (
        OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    )
    plain = {k: v for k, v in dict(container).items() if k not in own}
    fn = locate(key, plain)
    passed = {k: v for k, v in supplied.items() if names_parameter(fn, k)}
    factory = instantiate(plain, _partial_=True, _convert_="all")
    return factory(*args, **passed)


def _shown(value: Any) -> str:
    if isinstance(value, (DictConfig, Mapping)):
        return "{...}"
    return repr(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)


def constructor_error(key: str, node: Any, exc: BaseException) -> ConfigError:
    """A constructor's refusal as one line: `model.layers=[2] is invalid: ...` where its
    message starts with one of the node's keys, else naming the target."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = re.match(r"^(\w+)=", text)
    if first and first.group(1) in node:
        return ConfigError(f"{key}.{text}")
    return ConfigError(f"{key}: {node.get('_target_')} refused the config's values: {text}")
