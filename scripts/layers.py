#!/usr/bin/env python3
"""Checks the server's layering: no import cycle among the top-level modules of each crate
(commonpad-core in server/core/src, commonpad-server in server/src), no file over 400 lines,
and commonpad-core free of HTTP, Redis and PostgreSQL crates. Exits 1 with what is wrong.

A module "uses" another when any of its files names `crate::other` (in a `use` or a path).
Prints each crate's modules in layer order (lowest first), which docs/architecture.md shows.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = {"commonpad-core": ROOT / "server/core/src", "commonpad-server": ROOT / "server/src"}
MAX_LINES = 400
FORBIDDEN_IN_CORE = ["warp", "hyper", "hyper_util", "tokio_tungstenite", "tungstenite", "redis", "tokio_postgres"]


def top_module(src: pathlib.Path, path: pathlib.Path) -> str | None:
    rel = path.relative_to(src)
    if rel.parts[0] == "bin" or rel.name in ("lib.rs", "main.rs") and len(rel.parts) == 1:
        return None  # the crate root and the binary sit above every module
    return rel.parts[0].removesuffix(".rs")


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def edges(src: pathlib.Path) -> dict[str, set[str]]:
    uses: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        module = top_module(src, path)
        if module is None:
            continue
        found = uses.setdefault(module, set())
        code = strip_comments(path.read_text())
        for target in re.findall(r"\bcrate::([a-z_]+)", code):
            if target != module:
                found.add(target)
        # `use crate::{a, b::c}` groups
        for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
            for target in re.findall(r"(?:^|,)\s*([a-z_]+)", group):
                if target != module:
                    found.add(target)
    return uses


def order(uses: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """Topological order (lowest first) and the modules left in a cycle."""
    left = {m: {t for t in ts if t in uses} for m, ts in uses.items()}
    done: list[str] = []
    while True:
        ready = sorted(m for m, ts in left.items() if not ts - set(done))
        if not ready:
            break
        for m in ready:
            done.append(m)
            del left[m]
    return done, sorted(left)


def main() -> int:
    problems = []
    for crate, src in CRATES.items():
        uses = edges(src)
        layers, cyclic = order(uses)
        print(f"{crate}: {' < '.join(layers)}")
        if cyclic:
            detail = "; ".join(f"{m} uses {', '.join(sorted(uses[m] & set(cyclic)))}" for m in cyclic)
            problems.append(f"{crate}: import cycle among {', '.join(cyclic)} ({detail})")
        for path in sorted(src.rglob("*.rs")):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                problems.append(f"{path.relative_to(ROOT)} has {n} lines (at most {MAX_LINES}): split it by concern")
    core_text = "\n".join(strip_comments(p.read_text()) for p in CRATES["commonpad-core"].rglob("*.rs"))
    for name in FORBIDDEN_IN_CORE:
        if re.search(rf"\b{name}::", core_text):
            problems.append(f"commonpad-core names `{name}`: the engine must not depend on HTTP, Redis or PostgreSQL")
    for p in problems:
        print(f"LAYERS: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
