#!/usr/bin/env python3
"""Imports between the files of each crate: circles and oversized files.

For every crate under crates/, every path in non-test code that starts with `crate::`,
`super::` or `self::` (in `use` trees and inline), and every `use child::...` of a module the
file declares, becomes an edge from that file to the file that defines the item it names.
Re-exports (`pub use`) are a module's facade: they add no edge, and a name a file re-exports
is followed to the file that defines it.
Strongly connected groups of two or more files are import circles. A file's non-test lines
are its non-blank lines outside `#[cfg(test)]` items; the doc-comment share is that of `///`
and `//!` lines among them.

Usage: .ci/imports.py [--edges] [--max-lines N] [--check] [crate ...]
With --check it exits 1 when a circle or a file over the limit is found.
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip_comments(text):
    """Blank out comments and string literals, keeping line breaks."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 20]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            out.append("' '")
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def remove_test_items(code):
    """Drop `#[cfg(test)]` items (a module, a function, a use); returns the remaining code."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        if m.start() < i:
            continue
        out.append(code[i:m.start()])
        j = m.end()
        # The item ends at the first `;` before any `{`, or at the brace matching the first `{`.
        semi, brace = code.find(";", j), code.find("{", j)
        if brace < 0 or (0 <= semi < brace):
            i = semi + 1
            out.append("\n" * code.count("\n", m.start(), i))
            continue
        depth, k = 0, brace
        while k < len(code):
            if code[k] == "{":
                depth += 1
            elif code[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1
    out.append(code[i:])
    return "".join(out)


def count_lines(path):
    """Non-blank lines outside `#[cfg(test)]` items, comments included."""
    text = path.read_text()
    kept = remove_test_items(text)
    return sum(1 for line in kept.splitlines() if line.strip())


def doc_lines(path):
    """(doc-comment lines, non-blank lines) outside `#[cfg(test)]` items."""
    kept = [line.strip() for line in remove_test_items(path.read_text()).splitlines()]
    kept = [line for line in kept if line]
    return sum(1 for line in kept if line.startswith(("///", "//!"))), len(kept)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    depth, parts, cur = 0, [], ""
    for ch in tree:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    paths = []
    for part in parts:
        brace = part.find("{")
        if brace < 0:
            paths.append(part.split(" as ")[0])
            continue
        prefix = part[:brace]
        inner = part[brace + 1:part.rfind("}")]
        for sub in expand_use(inner):
            paths.append((prefix + sub) if sub != "self" else prefix.rstrip(":"))
    return paths


def absolute(p, here, declared):
    """The absolute module path (a list) a `use` path names, or None outside the crate."""
    segs = [s for s in p.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] in ("super", "self"):
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        return base + segs
    if segs[0] in declared:
        return list(here) + segs
    return None


class Crate:
    def __init__(self, src):
        self.src = src
        self.modules = {}  # module path tuple -> file
        self.roots = []
        self._reexports = {}
        for root_name in ("lib.rs", "main.rs"):
            if (src / root_name).exists():
                self.roots.append(src / root_name)
        for f in sorted(src.rglob("*.rs")):
            if f.name in ("lib.rs", "main.rs") and f.parent == src:
                continue
            rel = f.relative_to(src).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "mod":
                parts.pop()
            self.modules[tuple(parts)] = f

    def module_of(self, f):
        if f in self.roots:
            return ()
        for k, v in self.modules.items():
            if v == f:
                return k
        raise KeyError(f)

    def file_for(self, path, root, depth=0):
        """The file defining the longest module prefix of `path` (a list), or the crate root.

        A name that file re-exports (`pub use a::B;`) is followed to the file defining it, so a
        module's facade of re-exports adds no edge of its own.
        """
        n = len(path)
        while n > 0 and tuple(path[:n]) not in self.modules:
            n -= 1
        f = self.modules[tuple(path[:n])] if n else root
        if depth < 8 and len(path) > n and path[n] in self.reexports(f, root):
            return self.file_for(self.reexports(f, root)[path[n]] + path[n + 1:], root, depth + 1)
        return f

    def reexports(self, f, root):
        """Names `f` re-exports, each with the absolute module path it names."""
        key = (f, root)
        if key not in self._reexports:
            self._reexports[key] = {}
            code = remove_test_items(strip_comments(f.read_text()))
            here = self.module_of(f) if f != root else ()
            declared = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M))
            for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
                for p in expand_use(m.group(1)):
                    path = absolute(p, here, declared)
                    if path:
                        self._reexports[key][path[-1]] = path
        return self._reexports[key]

    def edges(self):
        result = {}
        for root in self.roots:
            files = [root] + [f for f in self.modules.values()]
            for f in files:
                if root.name == "main.rs" and len(self.roots) == 2 and f != root:
                    continue  # the binary's root sees the library through its name
                result.setdefault(f, set())
                code = remove_test_items(strip_comments(f.read_text()))
                here = self.module_of(f) if f != root else ()
                # A file's own module path for `super::`: a `foo.rs` or `foo/mod.rs` is module foo.
                declared = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M))
                targets = []
                # A re-export (`pub use`) is a facade, not a use: names it exports are followed
                # to their files by `file_for`.
                private = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", "", code)
                for m in re.finditer(r"\buse\s+([^;]+);", private):
                    for p in expand_use(m.group(1)):
                        targets.append(p)
                for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", private):
                    targets.append(m.group(1))
                for p in targets:
                    path = absolute(p, here, declared)
                    if path is None:
                        continue
                    target = self.file_for(path, root)
                    if target != f:
                        result[f].add(target)
        return result


def circles(edges):
    """Tarjan's strongly connected components of two or more files."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crates", nargs="*", help="crate names (default: every crate under crates/)")
    ap.add_argument("--edges", action="store_true", help="print every edge")
    ap.add_argument("--max-lines", type=int, default=600)
    ap.add_argument("--check", action="store_true", help="exit 1 on a circle or an oversized file")
    args = ap.parse_args()
    names = args.crates or sorted(p.name for p in (ROOT / "crates").iterdir() if (p / "src").is_dir())
    failed = False
    for name in names:
        src = ROOT / "crates" / name / "src"
        crate = Crate(src)
        edges = crate.edges()
        rel = lambda f: str(f.relative_to(src))
        found = circles(edges)
        big = sorted(((count_lines(f), rel(f)) for f in edges), reverse=True)
        big = [(n, f) for n, f in big if n > args.max_lines]
        n_edges = sum(len(v) for v in edges.values())
        docs, lines = map(sum, zip(*(doc_lines(f) for f in edges)))
        print(f"{name}: {len(edges)} files, {n_edges} edges, {len(found)} circles, "
              f"{len(big)} files over {args.max_lines} non-test lines, "
              f"doc comments {100 * docs / max(lines, 1):.1f} % of non-test lines")
        for comp in found:
            print(f"  circle of {len(comp)}: {', '.join(rel(f) for f in comp)}")
        for n, f in big:
            print(f"  {n} lines: {f}")
        if args.edges:
            for f in sorted(edges):
                for t in sorted(edges[f]):
                    print(f"  {rel(f)} -> {rel(t)}")
        failed |= bool(found or big)
    sys.exit(1 if args.check and failed else 0)


if __name__ == "__main__":
    main()
