"""`ivr prompts build|install|list`: StarPay's recorded prompts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.prompts.catalog import Catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prompts", help="build, install or list the recorded prompts")
    p.add_argument("--catalog", help="catalog file (default: prompts/catalog.toml)")
    psub = p.add_subparsers(dest="action", required=True)
    b = psub.add_parser("build", help="render changed prompts with espeak-ng and sox")
    b.add_argument("--out", help="build directory (default: prompts/build)")
    b.add_argument("-j", "--jobs", type=int, default=4, help="renders at a time (default 4)")
    b.set_defaults(func=build)
    i = psub.add_parser("install", help="copy built prompts into an Asterisk sounds directory")
    i.add_argument("--to", required=True, metavar="SOUNDS_DIR",
                   help="e.g. /usr/share/asterisk/sounds; files go to <lang>/starpay/")
    i.add_argument("--from", dest="src", help="build directory (default: prompts/build)")
    i.set_defaults(func=install)
    ls = psub.add_parser("list", help="print every prompt id and its text (the call as text)")
    ls.add_argument("--lang", help="one language only")
    ls.set_defaults(func=list_prompts)


def _default_build_dir() -> str:
    """prompts/build: --out and --from default to it here, not in register(), which would
    have to import the builder whenever the parser is built."""
    from ivr.prompts.build import DEFAULT_BUILD_DIR

    return str(DEFAULT_BUILD_DIR)


def _catalog(args: argparse.Namespace, cfg: Config) -> Catalog:
    from ivr.prompts.catalog import Catalog

    return Catalog.load(args.catalog, cfg.call.languages)


def build(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.prompts import build as builder
    from ivr.prompts.catalog import CatalogError

    if args.out is None:
        args.out = _default_build_dir()
    try:
        catalog = _catalog(args, cfg)
        tty = sys.stderr.isatty()

        def progress(done: int, total: int, key: str) -> None:
            if tty:
                print(f"\rrendering {done}/{total} {key:<40}", end="", file=sys.stderr)
            elif done % 50 == 0 or done == total:
                print(f"rendering {done}/{total}", file=sys.stderr)

        result = builder.build(catalog, Path(args.out), jobs=args.jobs, progress=progress)
    except (CatalogError, builder.ToolsMissing, builder.RenderFailed) as exc:
        print(f"\nivr prompts build: {exc}", file=sys.stderr)
        return 1
    if result.rendered and sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"prompts: {result.rendered} rendered, {result.unchanged} unchanged, "
          f"{result.removed} removed, in {args.out}")
    return 0


def install(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.prompts import build as builder

    if args.src is None:
        args.src = _default_build_dir()
    try:
        changed = builder.install_prompts(args.src, args.to)
    except (FileNotFoundError, PermissionError) as exc:
        print(f"ivr prompts install: {exc}", file=sys.stderr)
        return 1
    print(f"prompts installed in {args.to}/<lang>/starpay ({changed} file(s) changed)")
    return 0


def list_prompts(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.prompts.catalog import CatalogError

    try:
        catalog = _catalog(args, cfg)
    except CatalogError as exc:
        print(f"ivr prompts list: {exc}", file=sys.stderr)
        return 1
    langs = [args.lang] if args.lang else list(catalog.languages)
    unknown = [lang for lang in langs if lang not in catalog.languages]
    if unknown:
        print(f"ivr prompts list: no language {unknown[0]!r}; the catalog has "
              f"{', '.join(catalog.languages)}", file=sys.stderr)
        return 2
    width = max(len(pid) for pid in catalog.ids)
    for pid in catalog.ids:
        for lang in langs:
            label = pid if lang == langs[0] else ""
            print(f"{label:<{width}}  {lang}  {catalog.text(pid, lang)}")
    return 0
