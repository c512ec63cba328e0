"""The accelerate scripts' shared command line: ``--tier``/``--set`` run a stage with a notebook's settings of a tier,
or explicit ``--model``/``--out``. Lives with the two accelerate scripts that share it; the library's own entry points
(``python -m ivt_lib.<wing>.<module>``) each parse their command line in their ``main``."""
from __future__ import annotations

from typing import Any

from ivt_lib.configs import ConfigError


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` (values parsed as YAML: numbers, booleans, strings) -> dict."""
    import yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set={pair!r}: must look like key=value")
        k, v = pair.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def add_tier_arguments(parser, notebook: str, what: str) -> None:
    """``--tier`` / ``--set`` on a script's parser: run a stage with notebook ``notebook``'s settings of a tier."""
    parser.add_argument("--tier", default=None, help=f"take every setting from notebook {notebook} of params/TIER.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"with --tier: override a notebook-{notebook} parameter (repeatable)")
    parser.add_argument("--model", help=f"model folder or hub id ({what}); not with --tier")


def check_tier_arguments(parser, args) -> None:
    """Either ``--tier`` or both ``--model`` and ``--out`` (a parser error otherwise)."""
    if args.tier is None and (args.model is None or args.out is None):
        parser.error("give --tier, or --model and --out")
    if args.tier is not None and (args.model or args.out):
        parser.error("--tier takes the model and output folder from the tier file (use --set to override)")
