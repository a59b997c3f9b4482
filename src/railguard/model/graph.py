"""Dependency graphs: cycle detection and a stable topological order.

Used by the spec checks (a cycle is a diagnostic) and by the planner (changes are
ordered so a service rolls out after what it depends on). Ties break by name so the
same input always gives the same plan, which keeps plan hashes and golden files stable.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one cycle (as a list of nodes) or None. Iterative, so deep graphs cannot overflow."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    # Sorted once per node: a node with many dependencies (the edge) is revisited once per child.
    children_of = {node: sorted(deps) for node, deps in graph.items()}
    for root in sorted(graph):
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            children = children_of.get(node, [])
            if index < len(children):
                stack.append((node, index + 1))
                child = children[index]
                if state.get(child) == 1:
                    return path[path.index(child):]
                if not state.get(child):
                    stack.append((child, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def topological_order(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Nodes ordered so each comes after the nodes it depends on (graph: node -> dependencies).

    Dependencies that are not nodes of the graph are ignored. The graph must be acyclic;
    nodes left in a cycle are appended at the end in name order rather than lost.
    """
    return ordered(graph)[0]


def ordered(graph: Mapping[str, Sequence[str]]) -> tuple[list[str], bool]:
    """:func:`topological_order`, and whether it placed every node (False: a cycle of two or more nodes)."""
    waiting = {node: {d for d in deps if d in graph and d != node} for node, deps in graph.items()}
    dependents: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in waiting.items():
        for dep in deps:
            dependents[dep].append(node)
    ready = [node for node, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for child in dependents[node]:
            waiting[child].discard(node)
            if not waiting[child]:
                heapq.heappush(ready, child)
    placed = len(order) == len(graph)
    if not placed:
        done = set(order)
        order.extend(sorted(n for n in graph if n not in done))
    return order, placed
