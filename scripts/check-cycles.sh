#!/usr/bin/env bash
# No import cycles between the modules of one crate (docs/design.md, "Layout and dependency
# direction"): a cycle means neither module can be read, tested or moved without the other.
# Builds the module dependency graph of each crate (io, policy, appliance, bench, tests) from
# its source and exits 1 naming every cycle, each edge with the file:line that makes it;
# exits 0 when there is none. `--edges` also prints every edge (to see what depends on
# what). Needs python3 only.
#
# The graph, one node per module file (inline `mod x { }` blocks belong to their file):
# - an edge A -> B for each path A names that resolves into B: `use` trees (groups
#   `{a, b::c}`, `self`, `super::`, `crate::`, child modules, `as` renames, globs) and
#   qualified paths in code (`crate::x::f()`, `super::T`, `config::Upstream` after
#   `use crate::config`);
# - a path is followed through `pub use` re-exports to the module that defines the item, so
#   a facade (`mod.rs` that re-exports its children) does not depend on its children; a
#   re-export is an edge of its own only where the module's code also uses the name;
# - `#[cfg(test)]` items (test modules and files) are left out: tests may use anything.
#
# Cycles are looked for between siblings: a module with all its submodules is one unit, and
# an edge A -> B counts between the two children of their deepest common ancestor that hold
# A and B (so `config::validate -> classify` is `config -> classify`). A module and its own
# submodules may use each other: a child reading its parent's types through `super::` is
# how one module is split into files. `--strict` counts those too.
set -euo pipefail
cd "$(dirname "$0")/.."

exec python3 - "$@" <<'PY'
import os
import re
import sys

CRATES = {
    "io": ["io/src/lib.rs"],
    "policy": ["policy/src/lib.rs"],
    "appliance": ["appliance/src/main.rs"],
    "bench": ["bench/src/lib.rs"],
    "tests": ["tests/src/lib.rs"],
}
# `NAME=ROOT.rs` arguments check those crates instead (to try the check on a sample).
ARGS = [a for a in sys.argv[1:] if "=" in a]
if ARGS:
    CRATES = {a.split("=", 1)[0]: [a.split("=", 1)[1]] for a in ARGS}
SHOW_EDGES = "--edges" in sys.argv[1:]
STRICT = "--strict" in sys.argv[1:]
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def blank(s):
    """The same text with every character but newlines made a space (keeps line numbers)."""
    return re.sub(r"[^\n]", " ", s)


def strip_comments_and_literals(src):
    """Comments, strings and char literals blanked; lifetimes and code kept."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(src[i:j]))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(src[i:j]))
            i = j
        elif re.match(r'b?r#*"', src[i:i + 40]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append(blank(src[i:end]))
            i = end
        elif c == '"' or (c == "b" and src.startswith('b"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_"))):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(blank(src[i:j + 1]))
            i = j + 1
        elif c == "'":
            if src.startswith("'\\", i):
                j = src.find("'", i + 2)
                j = n if j < 0 else j + 1
                out.append(blank(src[i:j]))
                i = j
            elif i + 2 < n and src[i + 2] == "'":
                out.append("   ")
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def item_end(text, i):
    """End of the item starting at i: after its `;` or its closing brace at depth 0."""
    depth, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "{":
            if depth == 0:
                return match_brace(text, i) + 1
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        i += 1
    return n


def match_brace(text, i):
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")


def drop_test_items(text):
    """`#[cfg(test)]` items blanked; returns the text and the names of `mod x;` test files."""
    test_mods = set()
    while True:
        m = CFG_TEST.search(text)
        if not m:
            return text, test_mods
        j = m.end()
        # Further attributes of the same item.
        while True:
            a = re.match(r"\s*#\s*\[", text[j:])
            if not a:
                break
            depth, j = 1, j + a.end()
            while depth:
                depth += {"[": 1, "]": -1}.get(text[j], 0)
                j += 1
        end = item_end(text, j)
        dm = re.match(r"\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", text[j:end])
        if dm:
            test_mods.add(dm.group(1))
        text = text[:m.start()] + blank(text[m.start():end]) + text[end:]


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


class Module:
    def __init__(self, path, file):
        self.path = path            # tuple of segments; () is the crate root
        self.file = file
        self.children = {}          # name -> tuple path
        self.defined = set()        # item names defined here
        self.reexports = {}         # name -> absolute segments (pub use)
        self.glob_reexports = []    # absolute module segments (pub use x::*)
        self.imports = {}           # name -> absolute segments (private use)
        self.uses = []              # (absolute segments, glob, pub, alias, pos)
        self.inline_spans = []      # (start, end) of inline non-test `mod x { }` blocks
        self.code = ""              # stripped text without use declarations
        self.text = ""


def child_file(parent_file, name):
    d = os.path.dirname(parent_file)
    base = os.path.basename(parent_file)
    if base not in ("mod.rs", "lib.rs", "main.rs"):
        d = os.path.join(d, base[:-3])
    for cand in (os.path.join(d, name + ".rs"), os.path.join(d, name, "mod.rs")):
        if os.path.exists(cand):
            return cand
    return None


def load(root_file):
    mods = {}
    todo = [((), root_file)]
    while todo:
        path, file = todo.pop()
        m = Module(path, file)
        with open(file, encoding="utf-8") as f:
            text = strip_comments_and_literals(f.read())
        text, test_mods = drop_test_items(text)
        m.text = text
        for d in re.finditer(r"(?:^|[;{}\]\s])(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])", text):
            name = d.group(1)
            if d.group(2) == "{":
                open_at = d.end() - 1
                m.inline_spans.append((open_at, match_brace(text, open_at)))
                m.defined.add(name)
                continue
            if name in test_mods:
                continue
            f2 = child_file(file, name)
            if f2 is None:
                sys.exit(f"check-cycles: {file}: no file for `mod {name};`")
            m.children[name] = path + (name,)
            todo.append((path + (name,), f2))
        for d in re.finditer(r"\b(?:fn|struct|enum|trait|type|const|static|union)\s+(" + IDENT + r")", text):
            m.defined.add(d.group(1))
        for d in re.finditer(r"\bmacro_rules!\s*(" + IDENT + r")", text):
            m.defined.add(d.group(1))
        mods[path] = m
    return mods


def split_top(s, sep=","):
    parts, depth, cur = [], 0, []
    for c in s:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def expand_tree(tree, prefix=()):
    """`a::{b, c::d as e, f::*}` -> [(segments, alias, glob)]."""
    tree = re.sub(r"\s+", " ", tree).strip()
    out = []
    if tree.startswith("::"):
        tree = tree[2:]
    brace = tree.find("{")
    if brace >= 0 and tree.endswith("}"):
        head = tree[:brace].rstrip(": ").strip()
        segs = tuple(s.strip() for s in head.split("::") if s.strip()) if head else ()
        for part in split_top(tree[brace + 1:-1]):
            out += expand_tree(part, prefix + segs)
        return out
    alias = None
    am = re.match(r"(.*?)\s+as\s+(" + IDENT + r")$", tree)
    if am:
        tree, alias = am.group(1), am.group(2)
    segs = tuple(s.strip() for s in tree.split("::") if s.strip())
    if segs and segs[-1] == "*":
        return [(prefix + segs[:-1], None, True)]
    if segs and segs[-1] == "self":
        segs = segs[:-1]
        full = prefix + segs
        return [(full, alias or (full[-1] if full else None), False)]
    full = prefix + segs
    return [(full, alias or (full[-1] if full else None), False)]


USE = re.compile(r"(?:^|(?<=[;{}\]\s]))(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]+);")


def absolute(mods, m, segs, pos):
    """Segments relative to module m -> absolute segments, or None (outside this crate)."""
    if not segs:
        return None
    inline_depth = sum(1 for a, b in m.inline_spans if a <= pos <= b)
    head, rest = segs[0], list(segs[1:])
    if head == "crate":
        return tuple(rest)
    if head in ("self", "super"):
        base = list(m.path)
        if head == "super":
            ups = 1
            while rest and rest[0] == "super":
                ups, rest = ups + 1, rest[1:]
            ups = max(0, ups - inline_depth)
            base = base[:len(base) - ups] if ups else base
        return tuple(base) + tuple(rest)
    if inline_depth:
        return None
    if head in m.children:
        return m.children[head] + tuple(rest)
    if head in m.imports:
        return m.imports[head] + tuple(rest)
    return None


def resolve(mods, segs, seen=None):
    """Absolute segments -> the module path that defines what they name."""
    seen = seen or set()
    if segs in seen:
        return None
    seen.add(segs)
    cur = ()
    for i, s in enumerate(segs):
        m = mods[cur]
        if s in m.children:
            cur = m.children[s]
            continue
        if s in m.defined:
            return cur
        if s in m.reexports:
            return resolve(mods, m.reexports[s] + tuple(segs[i + 1:]), seen)
        for g in m.glob_reexports:
            t = resolve(mods, g + tuple(segs[i:]), seen)
            if t is not None and (s in mods[t].defined or s in mods[t].children):
                return t
        return cur
    return cur


def graph(mods):
    # Pass 1: use declarations (imports and re-exports), in source order per module.
    for m in mods.values():
        code = m.text
        for u in USE.finditer(m.text):
            is_pub = bool(u.group(1))
            for segs, alias, glob in expand_tree(u.group(2)):
                m.uses.append((segs, alias, glob, is_pub, u.start()))
            code = code[:u.start()] + blank(code[u.start():u.end()]) + code[u.end():]
        m.code = code
    # Imports resolve in order (a `use` may start at a name an earlier one brought in);
    # two rounds let re-exports that name each other settle.
    for _ in range(2):
        for m in mods.values():
            for segs, alias, glob, is_pub, pos in m.uses:
                a = absolute(mods, m, segs, pos)
                if a is None:
                    continue
                if glob:
                    if is_pub and a not in m.glob_reexports:
                        m.glob_reexports.append(a)
                elif alias:
                    (m.reexports if is_pub else m.imports)[alias] = a
                    if is_pub:
                        m.imports[alias] = a
    edges = {}

    def add(m, target, pos, what):
        if target is None or target == m.path or target not in mods:
            return
        key = (m.path, target)
        if key not in edges:
            edges[key] = f"{m.file}:{line_of(m.text, pos)}: {what}"

    for m in mods.values():
        for segs, alias, glob, is_pub, pos in m.uses:
            a = absolute(mods, m, segs, pos)
            if a is None:
                continue
            if is_pub and not glob:
                # A re-export is a dependency only where this module's code uses the name.
                if not (alias and re.search(r"\b" + re.escape(alias) + r"\b", m.code)):
                    continue
            if is_pub and glob:
                continue
            add(m, resolve(mods, a), pos, "use " + "::".join(segs) + ("::*" if glob else ""))
        for p in re.finditer(r"(?<![\w:])(" + IDENT + r"(?:\s*::\s*" + IDENT + r")+)", m.code):
            segs = tuple(s.strip() for s in p.group(1).split("::"))
            a = absolute(mods, m, segs, p.start())
            if a is None:
                continue
            add(m, resolve(mods, a), p.start(), "::".join(segs))
    return edges


def name(path):
    return "crate" if not path else "::".join(path)


def sccs(nodes, succ):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ.get(v, ()):
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
            out.append(comp)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def shortest_cycle(start, comp, succ):
    """A shortest cycle through start inside comp (breadth-first)."""
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(succ.get(v, ())):
                if w not in comp:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]


def level_edges(edges):
    """File edges -> edges between sibling subtrees: A -> B counts between the two children
    of their deepest common ancestor that contain them; a module and its own ancestors or
    descendants are one unit (with --strict: every file is its own unit)."""
    out = {}
    for (a, b), why in edges.items():
        if STRICT:
            out.setdefault((a, b), (a, b, why))
            continue
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        if k == len(a) or k == len(b):
            continue
        out.setdefault((a[:k + 1], b[:k + 1]), (a, b, why))
    return out


failed = False
for crate, roots in CRATES.items():
    for root in roots:
        if not os.path.exists(root):
            sys.exit(f"check-cycles: {crate}: no crate root {root}")
        mods = load(root)
        edges = graph(mods)
        if SHOW_EDGES:
            for (a, b), why in sorted(edges.items()):
                print(f"{crate}: {name(a)} -> {name(b)}    ({why})")
        lv = level_edges(edges)
        succ = {}
        for a, b in lv:
            succ.setdefault(a, set()).add(b)
        nodes = set(succ) | {b for a, b in lv}
        cyclic = [sorted(c) for c in sccs(nodes, succ) if len(c) > 1]
        if not cyclic:
            print(f"check-cycles: {crate}: {len(mods)} modules, {len(edges)} edges, no cycle",
                  flush=True)
            continue
        failed = True
        for comp in sorted(cyclic):
            cs = set(comp)
            print(f"check-cycles: {crate}: import cycle among "
                  + ", ".join(name(c) + ("/" if mods[c].children and not STRICT else "") for c in comp),
                  file=sys.stderr)
            # One shortest cycle through each member, each distinct cycle once.
            shown = set()
            for start in comp:
                cyc = shortest_cycle(start, cs, succ)
                k = min(tuple(cyc[i:-1] + cyc[:i]) for i in range(len(cyc) - 1))
                if k in shown:
                    continue
                shown.add(k)
                print("  cycle: " + " -> ".join(name(c) for c in cyc), file=sys.stderr)
                for a, b in zip(cyc, cyc[1:]):
                    fa, fb, why = lv[(a, b)]
                    print(f"    {name(fa)} -> {name(fb)}: {why}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
