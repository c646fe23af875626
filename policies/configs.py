"""The one loader of YAML configs (run, benchmark, RLlib) and the checks every config section shares.

Every error names what is wrong in one style: a file that cannot be read, a section that is not a mapping, the
unknown keys of a section with the keys it takes, or an ``env:`` block the env would refuse (through
:class:`~alignsam_gym.envs.config.EnvConfig`, before anything is built).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import yaml

from alignsam_gym.envs.config import EnvConfig

T = TypeVar("T")


def load_yaml_config(path: str | Path, what: str, resolve: Callable[[dict[str, Any]], T]) -> T:
    """Read the YAML mapping at ``path`` and ``resolve`` it (run, benchmark and RLlib configs); every error,
    unreadable file, not a mapping, or a bad key or value, names the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the {what} ({err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a {what} is a YAML mapping, got {type(raw).__name__}")
    try:
        return resolve(raw)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from err


def check_keys(section: str, raw: Any, allowed: Iterable[str]) -> Mapping[str, Any]:
    """``raw`` as a mapping whose keys are all ``allowed``.

    :param section: the section's name in messages (``"config"``, ``"srm"``, ``"init.imitation"``).
    :raises ValueError: when ``raw`` is not a mapping, or naming its unknown keys and the keys it takes.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{section} is a mapping, got {type(raw).__name__}")
    allowed = set(allowed)
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"unknown {section} keys {sorted(unknown)}; expected some of {sorted(allowed)}")
    return raw


#: ``gym.make`` keyword arguments that are not the env's settings (a rendering switch, an object, ``gym.make``'s own
#: wrappers): passed through unchecked
PASSED_THROUGH = ("render_mode", "embedding_table", "max_episode_steps", "disable_env_checker")


def check_env_block(section: str, env: Mapping[str, Any]) -> EnvConfig:
    """The :class:`~alignsam_gym.envs.config.EnvConfig` of a config's ``env:`` block (keyword arguments of
    ``gym.make("AlignSAM-v0", ...)``; those in :data:`PASSED_THROUGH` are not checked), so a misspelt key or a bad
    value fails when the config is read, not after hours of work.

    :raises ValueError: naming the section and the argument.
    """
    check_keys(section, env, (*EnvConfig.KEYWORDS, *PASSED_THROUGH))
    try:
        return EnvConfig.from_kwargs({key: value for key, value in env.items() if key not in PASSED_THROUGH})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{section}: {err}") from err


def make_env_kwargs(*layers: Mapping[str, Any] | None, **values: Any) -> dict[str, Any]:
    """The keyword arguments of one ``AlignSAM-v0`` env: mappings of them applied in order (a later one wins),
    then ``values`` (those that are None left out, so an unset option keeps the layers' value), checked by
    :class:`~alignsam_gym.envs.config.EnvConfig`. The one place training, evaluation, recording, benchmarks and
    the command line assemble env arguments.

    :raises ValueError: naming an unknown key or a bad value.
    """
    kwargs: dict[str, Any] = {}
    for layer in layers:
        kwargs.update(layer or {})
    kwargs.update({key: value for key, value in values.items() if value is not None})
    check_env_block("env", kwargs)
    return kwargs
