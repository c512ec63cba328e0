"""Tiers: one parameter file per tier, ``params/<tier>.yaml``, with one section per notebook, read as a schema.

A tier file is checked before anything runs, and every error names the file, the section and the key:

- the top level is a mapping whose keys are exactly the notebooks (:data:`NOTEBOOK_CONFIGS`): a misspelt, extra,
  duplicated or missing section is an error (a misspelt one used to leave that notebook on the default tier's folders);
- each section is a mapping of that notebook's parameters, and names its tier (``tier: <the file's tier>``);
- ``results_dir``, ``figures_dir`` and ``runs_dir`` may be left out: they are then the tier's own folders
  (:data:`TIER_FOLDERS`), never another tier's; a folder inside another tier's folders is refused;
- values are checked by the notebook's config dataclass (:func:`stage_config`), with the file and section added.
"""
from __future__ import annotations

import difflib
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from .base import TIER_FOLDERS, TIERS, ConfigError, StageConfig, check, ownership_problem, resolve_path
from .stages import NOTEBOOK_CONFIGS


def tier_file(tier: str) -> Path:
    """The parameter file of a tier."""
    check(tier in TIERS, "tier", tier, f"must be one of {TIERS}")
    return resolve_path(Path("params") / f"{tier}.yaml")  # (read at call time: tests move the root)


def load_tier(tier: str) -> dict[str, dict]:
    """The parameters of every notebook for a tier, from ``params/<tier>.yaml``, checked as a schema (module
    docstring), with the tier's folders filled in where the file leaves them out."""
    return read_tier_file(tier_file(tier), tier)


def _shown(path: Path) -> str:
    """A tier file as its errors name it: relative to the project root when inside it."""
    try:
        return str(path.resolve().relative_to(resolve_path(".").resolve()))
    except ValueError:
        return str(path)


def _error(file: str, why: str, section: Any = None, key: Any = None) -> ConfigError:
    where = ", ".join([file, *([f"section {section}"] if section is not None else []),
                       *([f"key {key}"] if key is not None else [])])
    err = ConfigError(f"{where}: {why}", key=None if key is None else str(key))
    err.file, err.section = file, section
    return err


def _suggest(name: Any, options) -> str:
    close = difflib.get_close_matches(str(name), list(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _load_yaml(text: str, file: str) -> Any:
    """``yaml.safe_load`` of a tier file, refusing a section or key given twice (safe_load keeps the last one)."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if isinstance(root, yaml.MappingNode):
            _no_repeats(root, file, None)
            for k, v in root.value:
                if isinstance(v, yaml.MappingNode):
                    _no_repeats(v, file, k.value)
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _error(file, f"not valid YAML: {e}") from None


def _no_repeats(node: Any, file: str, section: str | None) -> None:
    """Refuse a key given twice in one mapping node (a section of the file, or a key of ``section``)."""
    first: dict[str, int] = {}
    for k, _ in node.value:
        line = k.start_mark.line + 1
        if k.value in first:
            why = f"given twice (lines {first[k.value]} and {line}): give it once"
            raise _error(file, why, k.value) if section is None else _error(file, why, section, k.value)
        first[k.value] = line


def read_tier_file(path: str | Path, tier: str) -> dict[str, dict]:
    """Read and check one tier file (see the module docstring) for ``tier``; its sections, folders filled in."""
    path = Path(path)
    file = _shown(path)
    stems = list(NOTEBOOK_CONFIGS)
    if not path.exists():
        raise _error(file, f"no such tier file (the {tier} tier's parameters)")
    data = _load_yaml(path.read_text(), file)
    if data is None:
        raise _error(file, f"the file is empty: it needs one section per notebook ({', '.join(stems)}), each with at "
                           f"least `tier: {tier}`")
    if not isinstance(data, dict):
        raise _error(file, f"the top level is a {type(data).__name__}: it must be a mapping with one section per "
                           f"notebook ({stems[0]}: ..., {stems[1]}: ...)")
    for section in data:
        if section not in NOTEBOOK_CONFIGS:
            raise _error(file, f"not a notebook{_suggest(section, stems)}: sections are the notebooks "
                               f"{', '.join(stems)}", section)
    missing = [s for s in stems if s not in data]
    if missing:
        raise _error(file, f"no section for {', '.join(missing)}: every notebook needs one, with at least "
                           f"`tier: {tier}`", missing[0])
    return {stem: _section(file, tier, stem, data[stem]) for stem in stems}


def _section(file: str, tier: str, stem: str, section: Any) -> dict:
    """One notebook's section checked: a mapping of known keys, its tier, its folders (filled in from the tier)."""
    if not isinstance(section, dict):
        raise _error(file, f"must be a mapping of {stem}'s parameters, got {type(section).__name__} {section!r}",
                     stem)
    known = {f.name for f in fields(NOTEBOOK_CONFIGS[stem])}
    for key in section:
        if key not in known:
            raise _error(file, f"not a parameter of {stem}{_suggest(key, known)}", stem, key)
    if "tier" not in section:
        raise _error(file, f"missing: every section names its tier (`tier: {tier}`)", stem, "tier")
    if section["tier"] != tier:
        raise _error(file, f"{section['tier']!r} in the {tier} tier's file: must be {tier!r}", stem, "tier")
    out = {**section, **{k: v for k, v in TIER_FOLDERS[tier].items() if k not in section}}
    for key in NOTEBOOK_CONFIGS[stem].OUTPUTS:
        if isinstance(out.get(key), str) and out[key]:
            why = ownership_problem(tier, out[key])
            if why:
                raise _error(file, f"{out[key]!r} {why}", stem, key)
    return out


def stage_config(tier: str, notebook: str, params: Mapping[str, Any]) -> StageConfig:
    """``notebook``'s config built from ``params`` (its section of the tier file, maybe with overrides); an invalid
    value raises a :class:`ConfigError` that names the tier file, the section and the key."""
    check(notebook in NOTEBOOK_CONFIGS, "notebook", notebook, f"must be one of {sorted(NOTEBOOK_CONFIGS)}")
    file = _shown(tier_file(tier)) if tier in TIERS else f"params/{tier}.yaml"
    known = {f.name for f in fields(NOTEBOOK_CONFIGS[notebook])}
    for key in params:
        if key not in known:
            raise _error(file, f"not a parameter of {notebook}{_suggest(key, known)}", notebook, key)
    try:
        return NOTEBOOK_CONFIGS[notebook](**params)
    except ConfigError as e:
        raise _error(file, str(e), notebook, e.key) from None


def tier_config(tier: str, notebook: str, overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """The validated config of one notebook in a tier (``params/<tier>.yaml``), with ``overrides`` applied; what the
    notebook would run with. Scripts use it to run a stage exactly as its notebook would (e.g. on several GPUs)."""
    check(notebook in NOTEBOOK_CONFIGS, "notebook", notebook, f"must be one of {sorted(NOTEBOOK_CONFIGS)}")
    cls = NOTEBOOK_CONFIGS[notebook]
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in fields(cls)}
    check(not unknown, "overrides", sorted(unknown), f"not parameters of {notebook}")
    return stage_config(tier, notebook, {**load_tier(tier)[notebook], **overrides})
