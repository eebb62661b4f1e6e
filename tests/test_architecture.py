"""The module graph has no import cycles but the one allowed pair: a service enqueues
the huey task that calls it back. Imports inside functions count (grimp reads them)."""

from __future__ import annotations

import grimp

PACKAGES = ("campaigns", "members", "common", "config", "devtools")
ALLOWED = {frozenset({"campaigns.services", "campaigns.tasks"})}


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm over every module of the graph (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
    return found


def test_there_is_no_import_cycle_but_services_and_tasks():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert [sorted(c) for c in cycles if frozenset(c) not in ALLOWED] == []
