"""What a merge commit contributes itself to each path (reads trees and blobs).

Why: summing the files of non-merge commits misses what a merge changed on its own (a conflict
resolution, a dropped side) and counts twice what both sides did alike; the merge's own share,
by inclusion-exclusion over its parents' histories, makes the per-path sums exact.
"""

from __future__ import annotations

import binascii
from typing import Any

from metre import kernels
from metre.contracts.events import BlobDelta, MergeFile
from metre.contracts.paths import path_text
from metre.ingest.blobmeasures import NO_BLOB, measures
from metre.ingest.git.commit import Header
from metre.ingest.git.graph import merge_bases
from metre.ingest.git.objects import Entry, Reader, is_gitlink
from metre.ingest.git.treediff import tree_changes

__all__ = ["merge_files", "union_weights"]


def union_weights(repo: Any, commits: list[bytes]) -> dict[bytes, int]:
    """Weights w with sum(w[c] * v(c)) = the sum of an additive per-commit quantity over the
    union of the ancestries of `commits`, given that the sum over one commit's ancestry is
    v(commit) (a path's lines, its presence).

    Inclusion-exclusion, one commit at a time: U(xs + [y]) = U(xs) + anc(y) - (anc(y) & U(xs)),
    and anc(y) & U(xs) is the union of the ancestries of the lowest common ancestors of y and
    any of xs (their merge bases), computed the same way (they are older: it terminates)."""
    w: dict[bytes, int] = {}
    done: list[bytes] = []
    for y in commits:
        w[y] = w.get(y, 0) + 1
        if done:
            ids: Any = [y, *done]
            bases = sorted({bytes(b) for b in merge_bases(repo, ids)})
            for b, n in union_weights(repo, bases).items():
                w[b] = w.get(b, 0) - n
        done.append(y)
    return {c: n for c, n in w.items() if n}


def _lines(data: bytes) -> int:
    """git's line count of a text (a last line without a newline counts); 0 for binary."""
    if kernels.is_binary(data):
        return 0
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def merge_files(repo: Any, rd: Reader, sha: bytes, h: Header) -> tuple[MergeFile, ...]:
    """What merge `sha` contributes itself to each path: its value (lines, presence) minus the
    sum over the union of its parents' histories (`union_weights`). Zero for every path a
    merge took from one side while the others left it as in the merge base (a clean merge);
    non-zero where it resolved a conflict, changed something itself, dropped a side's change,
    or both sides made the same change (counted twice by their non-merge commits)."""
    weights = {t: -n for t, n in union_weights(repo, list(h.parents)).items()}
    weights[sha] = weights.get(sha, 0) + 1
    tree_weight: dict[bytes, int] = {}  # by binary tree name
    for c, n in weights.items():
        t = binascii.unhexlify(h.tree if c == sha else rd.node(c).tree)
        tree_weight[t] = tree_weight.get(t, 0) + n
    # net[path][entry]: the summed weights of the trees holding that entry at that path.
    # The weights are paired, one tree of weight +1 with one of weight -1 (the empty tree
    # pads the shorter side): a path where a pair's trees agree adds +1 and -1 to one entry,
    # nothing; so only the paths where a pair differs are visited. The merge's tree is paired
    # with its first parent's, a merge base with another parent: for a merged topic branch
    # both differ in the branch's own changes only, not in the mainline's since it forked.
    pos: list[bytes | None] = []
    neg: list[bytes | None] = []
    for t, n in tree_weight.items():
        (pos if n > 0 else neg).extend([t] * abs(n))
    first = binascii.unhexlify(rd.node(h.parents[0]).tree)
    for side, t in ((pos, binascii.unhexlify(h.tree)), (neg, first)):
        if t in side:
            side.remove(t)
            side.insert(0, t)
    pad = len(pos) - len(neg)
    (neg if pad > 0 else pos).extend([None] * abs(pad))
    net: dict[bytes, dict[Entry | None, int]] = {}
    for a, b in zip(pos, neg, strict=True):
        if a == b:
            continue
        for path, ea, eb in tree_changes(rd, a, b):
            d = net.get(path)
            if d is None:
                d = net[path] = {}
            d[ea] = d.get(ea, 0) + 1
            d[eb] = d.get(eb, 0) - 1
    values: dict[tuple[str, Entry], tuple[int, int, int, int, int]] = {}

    def value(text: str, e: Entry) -> tuple[int, int, int, int, int]:
        """(lines, bytes, binary, text bytes, code) of an entry at a path, read once per
        merge (by path too: the language, hence the code lines, depends on it)."""
        got = values.get((text, e))
        if got is None:
            if is_gitlink(e):
                got = (1, *NO_BLOB)
            else:
                data = rd.content(e)
                got = (_lines(data), *measures(text, e, data))
            values[text, e] = got
        return got

    out: list[MergeFile] = []
    for path in sorted(net):
        kept = [(e, n) for e, n in net[path].items() if n and e is not None]
        presence = sum(n for _, n in kept)
        name = path_text(path)
        count = size = binary = text = code = 0
        for e, n in kept:
            v = value(name, e)
            count += n * v[0]
            size += n * v[1]
            binary += n * v[2]
            text += n * v[3]
            code += n * v[4]
        if presence or count or size or binary or text or code:
            out.append(MergeFile(name, count, presence, BlobDelta(size, binary, text, code)))
    return tuple(out)
