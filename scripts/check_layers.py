#!/usr/bin/env python3
"""Layers of the engine import only downward, and no two files import each other.

Reads every `crate::…`, `super::…` and `self::…` path (use trees and inline
paths; comments, strings and `#[cfg(test)]` blocks skipped) in
crates/hart-engine/src and crates/hart-cli/src, and resolves it to the module
it names. Fails on:
- an edge from a top-level module of the engine to one in a higher layer
  (LAYERS below, lowest first) or to one the list does not know;
- a cycle between top-level modules (same-layer modules may import each other
  one way only);
- files of one folder that import each other, directly or round a cycle,
  a subfolder counting as one file (what both need belongs below them).

Usage: check_layers.py [--root DIR] [--edges] | --self-test
"""
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = "crates/hart-engine/src"
CLI = "crates/hart-cli/src"
# Lowest first; a module may import its own layer (acyclically) and any below it.
LAYERS = [
    {"error", "util", "outdir", "bench", "stats", "interrupt"},
    {"data"},
    {"model"},
    {"eval", "loss"},
    {"hessian", "faults", "compress", "landscape", "plot", "report"},
    {"train", "attack", "campaign"},
    {"experiment"},
]
LAYER_OF = {m: i for i, layer in enumerate(LAYERS) for m in layer}

STRING = re.compile(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', re.S)
LINE_COMMENT = re.compile(r"//[^\n]*")
BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
USE = re.compile(r"\buse\s+((?:crate|super|self)\b[^;]*);")
PATH = re.compile(r"\b((?:crate|super|self)(?:\s*::\s*\w+)+)")


def strip(text):
    text = BLOCK_COMMENT.sub(" ", text)
    text = STRING.sub('""', text)
    text = LINE_COMMENT.sub("", text)
    return drop_cfg_test(text)


def drop_cfg_test(text):
    """Removes each `#[cfg(test)]` item (a `mod … { … }` or `mod …;`, or one `use`)."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        j = m.end()
        brace = text.find("{", j)
        semi = text.find(";", j)
        if semi != -1 and (brace == -1 or semi < brace):
            i = semi + 1
            continue
        depth, k = 0, brace
        while k < len(text):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1
    out.append(text[i:])
    return "".join(out)


def expand_use(tree):
    """`crate::{a::b, c::{d, e}}` -> ["crate::a::b", "crate::c::d", "crate::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas\w+", "", tree)

    def walk(prefix, s):
        if not s.startswith("{"):
            head, _, rest = s.partition("::{")
            if rest:
                return walk(prefix + [head], "{" + rest)
            return [prefix + [p for p in s.split("::") if p]]
        inner = s[1:-1]
        parts, depth, cur = [], 0, ""
        for ch in inner:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        parts.append(cur)
        paths = []
        for p in parts:
            if p:
                paths.extend(walk(prefix, p))
        return paths

    return ["::".join(p) for p in walk([], tree)]


def module_path(src, file):
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return parts


def resolve(path, here):
    """Module path (list) a `crate::`/`super::`/`self::` path starts from, plus the rest."""
    segs = [s.strip() for s in path.split("::")]
    if segs[0] == "crate":
        base, rest = [], segs[1:]
    else:
        base, rest = list(here), segs
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    return base + [s for s in rest if s not in ("*", "self")]


def edges(src):
    """{(file, target module path)} for every .rs file under src."""
    out = []
    for file in sorted(src.rglob("*.rs")):
        here = module_path(src, file)
        text = strip(file.read_text())
        paths = []
        for m in USE.finditer(text):
            paths.extend(expand_use(m.group(1)))
        text = USE.sub(" ", text)
        paths.extend(m.group(1) for m in PATH.finditer(text))
        for p in paths:
            target = resolve(p, here)
            if target:
                out.append((file, here, target))
    return out


def reexports(src):
    """`pub use child::{A, b::C};` in a mod.rs or lib.rs -> {(module path): {"A": [child, "A"], "C": [child, "b", "C"]}}."""
    out = {}
    for file in src.rglob("*.rs"):
        if file.name not in ("mod.rs", "lib.rs"):
            continue
        here = tuple(module_path(src, file))
        for m in re.finditer(r"\bpub\s+use\s+([^;]+);", strip(file.read_text())):
            for path in expand_use(m.group(1)):
                segs = resolve(path, list(here)) if path.split("::")[0] in ("crate", "super", "self") else list(here) + path.split("::")
                if len(segs) > len(here) + 1 and tuple(segs[: len(here)]) == here:
                    out.setdefault(here, {})[segs[-1]] = segs[len(here):]
    return out


def canonical(target, names):
    """`target` with each re-exported name replaced by the path of its definition."""
    i = 0
    while i < len(target):
        alias = names.get(tuple(target[:i]), {}).get(target[i])
        if alias and alias != target[i : i + len(alias)]:
            target = target[:i] + alias + target[i + 1 :]
        i += 1
    return target


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, comps, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def check(root, show_edges=False):
    problems = []
    top = {}
    for crate in (ENGINE, CLI):
        src = root / crate
        if not src.is_dir():
            continue
        siblings = {}
        names = reexports(src)
        for file, here, target in edges(src):
            rel = file.relative_to(root)
            # Files (a subfolder counting as one) of one folder importing each other.
            target = canonical(target, names)
            for k in range(crate == ENGINE, len(here)):
                folder, mine = here[:k], here[k]
                if target[:k] != folder or len(target) <= k or target[k] == mine:
                    continue
                other = target[k]
                if src.joinpath(*folder, other + ".rs").exists() or src.joinpath(*folder, other, "mod.rs").exists():
                    siblings.setdefault((crate, "/".join(folder) or "."), {}).setdefault(mine, set()).add(other)
            if crate != ENGINE or not here or here[0] == target[0]:
                continue
            a, b = here[0], target[0]
            top.setdefault(a, set()).add(b)
            if show_edges:
                print(f"{rel}: {a} -> {'::'.join(target)}")
            if a not in LAYER_OF:
                problems.append(f"{rel}: module `{a}` has no layer in scripts/check_layers.py")
            elif b not in LAYER_OF:
                problems.append(f"{rel}: imports `{b}`, which has no layer in scripts/check_layers.py")
            elif LAYER_OF[b] > LAYER_OF[a]:
                problems.append(f"{rel}: `{a}` (layer {LAYER_OF[a]}) imports `crate::{'::'.join(target)}` (layer {LAYER_OF[b]}, above it)")
        for (crate_, folder), graph in sorted(siblings.items()):
            base = src.joinpath(*([] if folder == "." else folder.split("/")))
            unit = lambda u: u + "/" if (base / u).is_dir() else u + ".rs"
            for comp in cycles(graph):
                pairs = [(a, b) for a in comp for b in comp if a < b and b in graph.get(a, ()) and a in graph.get(b, ())]
                for a, b in pairs:
                    problems.append(f"{crate_}/{folder}: {unit(a)} and {unit(b)} import each other")
                if len(comp) > 2 or not pairs:
                    problems.append(f"{crate_}/{folder}: files import each other in a cycle: {', '.join(map(unit, comp))}")
    for comp in cycles(top):
        problems.append(f"{ENGINE}: top-level modules import each other in a cycle: {' -> '.join(comp)}")
    return sorted(set(problems))


def self_test():
    """The check finds an upward edge, a top-level cycle and a two-file cycle, and passes clean code."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        src = root / ENGINE
        for rel, text in {
            "lib.rs": "pub mod data; pub mod eval; pub mod train;",
            "data/mod.rs": "use crate::error::Result;\n#[cfg(test)]\nmod tests { use crate::train::x; }",
            "eval.rs": "use crate::{data::Dataset, model::{Net, info::Info}};\n// crate::train::x\nfn f() { let s = \"crate::train\"; }",
            "train/mod.rs": "use crate::eval::evaluate; use super::data::x;",
        }.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        clean = check(root)
        assert clean == [], clean
        (src / "data/idx.rs").write_text("pub fn f() { crate::eval::g() }")
        (src / "data/folder.rs").write_text("use super::cifar::x;")
        (src / "data/cifar.rs").write_text("use super::{folder::y};")
        found = check(root)
        assert any("`data` (layer 1) imports `crate::eval::g`" in p for p in found), found
        assert any("cifar.rs and folder.rs import each other" in p for p in found), found
        (src / "faults").mkdir()
        (src / "faults/mod.rs").write_text("use crate::hessian::h;")
        (src / "hessian").mkdir()
        (src / "hessian/mod.rs").write_text("use crate::faults::f;")
        found = check(root)
        assert any("cycle: faults -> hessian" in p for p in found), found
        (src / "faults/mod.rs").write_text("pub use engine::Ctx;")
        (src / "hessian/mod.rs").write_text("")
        (src / "faults/engine.rs").write_text("use super::verdict::Outcome;")
        (src / "faults/verdict.rs").write_text("use super::Ctx;")
        found = check(root)
        assert any("faults: engine.rs and verdict.rs import each other" in p for p in found), found
        (src / "faults/verdict.rs").write_text("")
        (src / "faults/fast").mkdir()
        (src / "faults/fast/mod.rs").write_text("")
        (src / "faults/fast/cut.rs").write_text("use crate::faults::engine::Ctx;")
        (src / "faults/engine.rs").write_text("use super::fast::Fast;")
        found = check(root)
        assert any("faults: engine.rs and fast/ import each other" in p for p in found), found
    print("check_layers: self-test passed", flush=True)
    return []


def main(argv):
    if "--self-test" in argv:
        self_test()
    root = ROOT
    if "--root" in argv:
        root = Path(argv[argv.index("--root") + 1])
    problems = check(root, show_edges="--edges" in argv)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(f"check_layers: {len(problems)} problem(s); the layers are listed at the top of scripts/check_layers.py")
    print("check_layers: imports go downward, no cycles")


if __name__ == "__main__":
    main(sys.argv[1:])
