#!/usr/bin/env python3
"""No panicking tch call on paths input reaches, unless listed with a reason.

tch gives most libtorch operations two forms: `x.op(..)`, which panics when
libtorch throws, and `x.f_op(..)`, which returns a Result. This check finds
every call, in the library's non-test code, of a name that has an `f_` form
in tch, and compares the counts per (file, name) with scripts/tch-allow.txt.
A call beyond the listed count fails the check (use the `f_` form, or list it
under a reason saying why it cannot fail on input); a listed count above the
real one fails too, so the list shrinks as calls are converted.

Names tch shares with the standard library (`max`, `abs`, `clone`, `get`,
`sort`, ...) are skipped: a grep cannot tell `f64::max` from `Tensor::max`.

Usage: check_tch_calls.py [--root DIR] [--suggest] | --self-test
"""
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["crates/hart-engine/src"]
ALLOW = "scripts/tch-allow.txt"
# Also methods of std types that HART calls on numbers, slices, options and iterators.
SHARED_WITH_STD = {
    "abs", "all", "any", "ceil", "clamp", "clone", "copy", "cos", "data", "exp", "fill",
    "flatten", "flip", "floor", "get", "log10", "max", "min", "pow", "range", "remainder",
    "repeat", "resize", "round", "set", "sin", "slice", "sort", "split", "sqrt", "square",
    "take", "to", "trace", "random",
}
# Iterator methods too, but a Tensor's form always takes arguments: `.sum()` is an iterator's.
NEEDS_ARGS = {"sum", "product", "count"}
CALL = re.compile(r"(?:\.|Tensor::)\s*([a-z_][a-z0-9_]*)\s*(?:::<[^()]*>)?\((\s*\))?")


def tch_source():
    """tch's sources in the cargo registry, at the version Cargo.lock pins."""
    lock = (ROOT / "Cargo.lock").read_text()
    version = re.search(r'name = "tch"\nversion = "([^"]+)"', lock).group(1)
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    for src in sorted(home.glob(f"registry/src/*/tch-{version}/src")):
        return src
    sys.exit(f"check_tch_calls: tch {version} sources not found under {home}/registry/src (run cargo build first)")


def fallible_names():
    src = tch_source()
    names = set()
    for f in src.rglob("*.rs"):
        names.update(re.findall(r"\bpub fn f_([a-z0-9_]+)", f.read_text()))
    if len(names) < 1000:
        sys.exit(f"check_tch_calls: only {len(names)} f_ functions found in {src}")
    return names - SHARED_WITH_STD


def code_lines(text):
    """(line number, code) of non-test code, comments and string contents blanked."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() == "#[cfg(test)]":
            break
        line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
        out.append((n, line.split("//", 1)[0]))
    return out


def scan(root, names):
    found, where = Counter(), {}
    for d in SCANNED:
        for f in sorted((root / d).rglob("*.rs")):
            rel = f.relative_to(root).as_posix()
            lines = code_lines(f.read_text())
            # Method chains span lines: scan the joined code, map offsets back to lines.
            text = "\n".join(code for _, code in lines)
            starts = [0]
            for _, code in lines:
                starts.append(starts[-1] + len(code) + 1)
            for m in CALL.finditer(text):
                name = m.group(1)
                if name in NEEDS_ARGS and m.group(2):
                    continue
                if name in names:
                    found[(rel, name)] += 1
                    k = max(i for i, s in enumerate(starts) if s <= m.start())
                    where.setdefault((rel, name), []).append(lines[k][0])
    return found, where


def read_allow(path):
    allowed, reason, errors = {}, None, []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("# reason:"):
            reason = s[len("# reason:"):].strip()
            continue
        if s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) != 3 or not parts[2].isdigit():
            errors.append(f"{path}:{n}: expected `FILE NAME COUNT`, got {s!r}")
        elif not reason:
            errors.append(f"{path}:{n}: entry without a `# reason:` line above it")
        else:
            allowed[(parts[0], parts[1])] = int(parts[2])
    return allowed, errors


def check(root, names, suggest=False):
    found, where = scan(root, names)
    allowed, errors = read_allow(root / ALLOW)
    for key in sorted(set(found) | set(allowed)):
        have, ok = found.get(key, 0), allowed.get(key, 0)
        file, name = key
        if have > ok:
            lines = ",".join(map(str, where[key]))
            errors.append(f"{file}:{lines}: {have} call(s) of `{name}` but {ok} allowed: "
                          f"use `f_{name}` or list it in {ALLOW} with a reason")
        elif have < ok:
            errors.append(f"{ALLOW}: {file} {name} allows {ok} but {have} remain: lower the count")
    if suggest:
        for (file, name), n in sorted(found.items()):
            print(f"{file} {name} {n}")
    return errors


def self_test(names):
    """The check passes on the tree and fails once an unlisted call is added."""
    if check(ROOT, names):
        sys.exit("self-test: the tree itself fails the check (run without --self-test)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for d in SCANNED + ["scripts"]:
            shutil.copytree(ROOT / d, tmp / d)
        probe = tmp / SCANNED[0] / "eval.rs"
        probe.write_text(probe.read_text().replace(
            "pub fn evaluate(", "fn _probe(t: &Tensor) -> f64 {\n    t.double_value(&[])\n}\n\npub fn evaluate(", 1))
        errors = check(tmp, names)
        if not any("`double_value`" in e and "eval.rs" in e for e in errors):
            sys.exit(f"self-test: an added unlisted call was not reported: {errors}")
        # A commented-out call and one inside a string are not calls.
        probe.write_text(probe.read_text().replace("    t.double_value(&[])", '    // t.int64_value(&[])\n    let _ = "x.int64_value(";\n    0.0'))
        if check(tmp, names):
            sys.exit("self-test: comments or strings were counted as calls")
    print("check_tch_calls: self-test passed")


def main():
    args = sys.argv[1:]
    names = fallible_names()
    if "--self-test" in args:
        return self_test(names)
    root = Path(args[args.index("--root") + 1]) if "--root" in args else ROOT
    errors = check(root, names, suggest="--suggest" in args)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print("check_tch_calls: every panicking tch call is listed with a reason")


main()
