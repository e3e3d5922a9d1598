"""Bridges between datasets: paths along the join-key graph, for ``find_linkage``.

Two datasets are neighbours when they share a join-key type (NHS number, UPN, postcode, ...).
A question such as "do children in social care do worse at school?" needs social care →
pupils → attainment: no one dataset holds both a social-care flag and a grade, but pupils
shares a key with each. A breadth-first search from the dataset names, for every dataset two
or three hops away, the shortest path and the keys each hop would join on.

The graph comes from the catalogue's ``join_key`` search filter (one search per key type),
so it needs no dataset's detail and sees only what the caller may see. Each search is capped
at :data:`PER_KEY`; a catalogue with more datasets per key is searched in part, and says so.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import Any

from ndl.mcp import results as r
from ndl.mcp.library import Library

JOIN_KEYS: tuple[str, ...] = ("nhs_number", "upn", "local_id", "postcode", "date_of_birth",
                              "name")
MAX_HOPS = 3
PER_KEY = 100
MAX_BRIDGES = 20


async def key_graph(lib: Library, keys: Iterable[str] = JOIN_KEYS
                    ) -> tuple[dict[str, set[str]], dict[str, dict[str, Any]], bool]:
    """(dataset id → its join-key types, id → its search summary, whether any search was
    capped) for every dataset the caller can find with a join key."""
    has: dict[str, set[str]] = {}
    summary: dict[str, dict[str, Any]] = {}
    capped = False
    for key in keys:
        hits = await lib.search({"join_key": key, "limit": PER_KEY})
        capped = capped or hits["total"] > len(hits["results"])
        for d in hits["results"]:
            has.setdefault(d["id"], set()).add(key)
            summary[d["id"]] = d
    return has, summary, capped


def bridges(start: str, start_keys: Iterable[str], has: dict[str, set[str]],
            summary: dict[str, dict[str, Any]], *, max_hops: int = MAX_HOPS
            ) -> list[r.BridgePath]:
    """The shortest path to every dataset 2..``max_hops`` hops from ``start`` (nearest first,
    then by id), each hop naming the keys the two datasets share."""
    graph = {**has, start: set(start_keys)}
    # Sorted neighbours: the same catalogue always gives the same paths.
    came: dict[str, str | None] = {start: None}
    depth = {start: 0}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if depth[here] == max_hops:
            continue
        for other in sorted(graph):
            if other not in came and graph[here] & graph[other]:
                came[other], depth[other] = here, depth[here] + 1
                queue.append(other)
    out = []
    for target in sorted((t for t in came if depth[t] >= 2), key=lambda t: (depth[t], t)):
        path = [target]
        while (prev := came[path[-1]]) is not None:
            path.append(prev)
        path.reverse()
        hops = [r.LinkHop(from_id=a, to_id=b, join_keys=sorted(graph[a] & graph[b]))
                for a, b in itertools.pairwise(path)]
        d = summary.get(target, {})
        out.append(r.BridgePath(
            id=target, title=str(d.get("title", "")), publisher=str(d.get("publisher", "")),
            tier=str(d.get("tier", "")), via=path[1:-1], hops=hops))
    return out[:MAX_BRIDGES]


__all__ = ["JOIN_KEYS", "MAX_HOPS", "bridges", "key_graph"]
