"""The structure of a workflow graph, indexed once: scopes, adjacency, order, ancestry, cycles.

A *scope* is the top level (`None`) or one loop's body (the loop node's id). Edges only
connect nodes of one scope; a loop iterates through its loop node, never through back edges,
so every scope must be acyclic. The validator and the executor share this one reading of the
graph, so they cannot disagree about what a workflow means.

Nothing here raises on a malformed graph: duplicates, dangling edges, self loops, edges across
scopes and invalid parents are set aside in lists for the validator to report, and the rest
is indexed as if they were absent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from shared.workflow.model import HANDLE_ERROR, Edge, Node, WorkflowGraph

Scope = str | None
ParentProblem = Literal["missing", "not_loop", "cycle", "not_allowed"]
# Nodes that belong to the top level: the run starts, ends and shapes its output there.
TOP_LEVEL_ONLY: Final = frozenset({"start", "end", "output"})


@dataclass(frozen=True)
class InvalidParent:
    node_id: str
    parent_id: str
    problem: ParentProblem


class GraphIndex:
    def __init__(self, graph: WorkflowGraph) -> None:
        self.graph = graph
        self.nodes_by_id: dict[str, Node] = {}
        self.duplicate_nodes: list[Node] = []
        for node in graph.nodes:
            if node.id in self.nodes_by_id:
                self.duplicate_nodes.append(node)
            else:
                self.nodes_by_id[node.id] = node

        self.edges_by_id: dict[str, Edge] = {}
        self.duplicate_edges: list[Edge] = []
        for edge in graph.edges:
            if edge.id in self.edges_by_id:
                self.duplicate_edges.append(edge)
            else:
                self.edges_by_id[edge.id] = edge

        self.invalid_parents: list[InvalidParent] = []
        self.parent_of: dict[str, str] = self._resolve_parents()
        self.children: dict[str, list[str]] = {}
        self.top_level: list[str] = []
        for node_id in self.nodes_by_id:
            parent = self.parent_of.get(node_id)
            if parent is None:
                self.top_level.append(node_id)
            else:
                self.children.setdefault(parent, []).append(node_id)

        # Structural edges join two existing nodes of one scope; the rest are set aside.
        self.outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes_by_id}
        self.incoming: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes_by_id}
        self.dangling_edges: list[Edge] = []
        self.self_loops: list[Edge] = []
        self.cross_scope_edges: list[Edge] = []
        for edge in self.edges_by_id.values():
            if edge.source not in self.nodes_by_id or edge.target not in self.nodes_by_id:
                self.dangling_edges.append(edge)
            elif edge.source == edge.target:
                self.self_loops.append(edge)
            elif self.scope_of(edge.source) != self.scope_of(edge.target):
                self.cross_scope_edges.append(edge)
            else:
                self.outgoing[edge.source].append(edge)
                self.incoming[edge.target].append(edge)

        self._orders: dict[Scope, list[str] | None] = {}
        self._local_masks: dict[Scope, dict[str, int]] = {}
        self._positions: dict[str, int] = {}
        self._ancestors: dict[str, set[str]] = {}

    # -- scopes ---------------------------------------------------------------------------

    def _resolve_parents(self) -> dict[str, str]:
        parents: dict[str, str] = {}
        for node in self.nodes_by_id.values():
            if node.parentId is None:
                continue
            parent = self.nodes_by_id.get(node.parentId)
            problem: ParentProblem | None = None
            if parent is None:
                problem = "missing"
            elif parent.type != "loop":
                problem = "not_loop"
            elif node.type in TOP_LEVEL_ONLY:
                problem = "not_allowed"
            if problem is None:
                parents[node.id] = node.parentId
            else:
                self.invalid_parents.append(InvalidParent(node.id, node.parentId, problem))
        # Loops nested in each other in a circle have no outermost scope: lift them out. Each
        # node is walked once (a chain stops at a node already settled), so 2000 loops nested
        # in one another cost 2000 steps, not 2000².
        on_chain, settled = 1, 2
        state: dict[str, int] = {}
        for start in list(parents):
            chain: list[str] = []
            current: str | None = start
            while current is not None and current in parents and current not in state:
                state[current] = on_chain
                chain.append(current)
                current = parents[current]
            if current is not None and state.get(current) == on_chain:
                for node_id in chain[chain.index(current) :]:
                    self.invalid_parents.append(InvalidParent(node_id, parents[node_id], "cycle"))
                    del parents[node_id]
            state.update(dict.fromkeys(chain, settled))
        return parents

    def loop_nesting(self) -> int:
        """How many loops the most deeply nested node is inside (0: no loop bodies)."""
        depths: dict[str, int] = {}
        for start in self.parent_of:
            chain: list[str] = []
            current: str | None = start
            while current is not None and current not in depths:
                chain.append(current)
                current = self.parent_of.get(current)
            depth = 0 if current is None else depths[current]
            for node_id in reversed(chain):
                depth += 1 if node_id in self.parent_of else 0
                depths[node_id] = depth
        return max(depths.values(), default=0)

    def scope_of(self, node_id: str) -> Scope:
        """The loop whose body holds the node, or None for the top level."""
        return self.parent_of.get(node_id)

    def scope_nodes(self, scope: Scope) -> list[str]:
        return self.top_level if scope is None else self.children.get(scope, [])

    def scopes(self) -> list[Scope]:
        """The top level, then every loop's body (loops with an empty body included)."""
        loops = [node_id for node_id, node in self.nodes_by_id.items() if node.type == "loop"]
        return [None, *loops]

    def enclosing_loops(self, node_id: str) -> list[str]:
        """The loops whose bodies hold the node, outermost first."""
        chain: list[str] = []
        current = self.parent_of.get(node_id)
        while current is not None:
            chain.append(current)
            current = self.parent_of.get(current)
        return chain[::-1]

    def body_nodes(self, loop_id: str) -> list[str]:
        """Every node inside a loop's body, nested bodies included."""
        found: list[str] = []
        pending = list(self.children.get(loop_id, []))
        while pending:
            node_id = pending.pop()
            found.append(node_id)
            pending.extend(self.children.get(node_id, []))
        return found

    # -- adjacency --------------------------------------------------------------------------

    def successors(self, node_id: str, handle: str | None = None) -> list[str]:
        """Targets of the node's edges; with `handle`, only edges leaving through it."""
        return [
            edge.target
            for edge in self.outgoing.get(node_id, [])
            if handle is None or edge.sourceHandle == handle
        ]

    def predecessors(self, node_id: str) -> list[str]:
        return [edge.source for edge in self.incoming.get(node_id, [])]

    def nodes_of_type(self, node_type: str) -> list[str]:
        return [node_id for node_id, node in self.nodes_by_id.items() if node.type == node_type]

    def entry_nodes(self, scope: Scope) -> list[str]:
        """Nodes of the scope without incoming edges (a loop body starts at these)."""
        return [node_id for node_id in self.scope_nodes(scope) if not self.incoming[node_id]]

    def exit_nodes(self, scope: Scope) -> list[str]:
        """Nodes of the scope with no outgoing edge except failure edges."""
        return [
            node_id
            for node_id in self.scope_nodes(scope)
            if all(edge.sourceHandle == HANDLE_ERROR for edge in self.outgoing[node_id])
        ]

    def reachable_from(self, sources: Iterable[str]) -> set[str]:
        """Nodes reached along edges from `sources`; a reached loop reaches its whole body."""
        reached: set[str] = set()
        queue = deque(sources)
        while queue:
            node_id = queue.popleft()
            if node_id in reached or node_id not in self.nodes_by_id:
                continue
            reached.add(node_id)
            queue.extend(self.successors(node_id))
            queue.extend(self.children.get(node_id, []))
        return reached

    # -- order and cycles --------------------------------------------------------------------

    def topological_order(self, scope: Scope = None) -> list[str] | None:
        """The scope's nodes, each after all its predecessors (ties in document order);
        None if the scope has a cycle."""
        if scope not in self._orders:
            nodes = self.scope_nodes(scope)
            pending = {node_id: len(self.incoming[node_id]) for node_id in nodes}
            ready = deque(node_id for node_id in nodes if pending[node_id] == 0)
            order: list[str] = []
            while ready:
                node_id = ready.popleft()
                order.append(node_id)
                for target in self.successors(node_id):
                    pending[target] -= 1
                    if pending[target] == 0:
                        ready.append(target)
            self._orders[scope] = order if len(order) == len(nodes) else None
        return self._orders[scope]

    def find_cycles(self, scope: Scope = None) -> list[list[str]]:
        """One cycle (node ids in edge order) per strongly connected group of the scope."""
        if self.topological_order(scope) is not None:
            return []
        return [self._cycle_within(group) for group in self._strong_components(scope)]

    def find_cycle(self, scope: Scope = None) -> list[str] | None:
        """A cycle among the scope's edges, node ids in order, or None."""
        cycles = self.find_cycles(scope)
        return cycles[0] if cycles else None

    def _strong_components(self, scope: Scope, every: bool = False) -> list[list[str]]:
        """Tarjan's algorithm, iteratively; only components of more than one node unless
        `every`. A component comes after every component it has edges to."""
        index_of: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        components: list[list[str]] = []
        for root in self.scope_nodes(scope):
            if root in index_of:
                continue
            work: list[tuple[str, int]] = [(root, 0)]
            while work:
                node_id, position = work.pop()
                if position == 0:
                    index_of[node_id] = low[node_id] = len(index_of)
                    stack.append(node_id)
                    on_stack.add(node_id)
                targets = self.successors(node_id)
                if position < len(targets):
                    work.append((node_id, position + 1))
                    target = targets[position]
                    if target not in index_of:
                        work.append((target, 0))
                    elif target in on_stack:
                        low[node_id] = min(low[node_id], index_of[target])
                    continue
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node_id])
                if low[node_id] == index_of[node_id]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node_id:
                            break
                    if every or len(component) > 1:
                        components.append(component)
        return components

    def _cycle_within(self, group: list[str]) -> list[str]:
        """A simple cycle through the group, starting at its first node in document order."""
        members = set(group)
        start = min(group, key=self.document_position)
        # Breadth-first from start back to start inside the group gives a shortest cycle.
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node_id = queue.popleft()
            for target in self.successors(node_id):
                if target not in members:
                    continue
                if target == start:
                    path = [node_id]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if target not in previous:
                    previous[target] = node_id
                    queue.append(target)
        return sorted(group, key=self.document_position)  # unreachable for a true component

    def document_position(self, node_id: str) -> int:
        """The node's position in the document (for stable, readable reports)."""
        if not self._positions:
            self._positions = {node_id: bit for bit, node_id in enumerate(self.nodes_by_id)}
        return self._positions[node_id]

    # -- ancestry ---------------------------------------------------------------------------

    def _local_mask(self, scope: Scope) -> dict[str, int]:
        """Per node of the scope, a bit set of its upstream nodes within the scope."""
        if scope not in self._local_masks:
            masks: dict[str, int] = {}
            order = self.topological_order(scope)
            if order is not None:
                # Acyclic: one pass in order; bit sets make each union one integer `or`.
                for node_id in order:
                    mask = 0
                    for source in self.predecessors(node_id):
                        mask |= masks[source] | (1 << self.document_position(source))
                    masks[node_id] = mask
            else:
                masks = self._masks_by_components(scope)
            self._local_masks[scope] = masks
        return self._local_masks[scope]

    def _masks_by_components(self, scope: Scope) -> dict[str, int]:
        """The masks of a scope with cycles, in one pass over its strongly connected groups
        in order (a search per node would be quadratic: seconds for 2000 nodes)."""
        masks: dict[str, int] = {}
        # Tarjan's algorithm finds a group after every group it leads to: reversed, upstream
        # groups come first.
        for group in reversed(self._strong_components(scope, every=True)):
            members = set(group)
            mask = 0
            if len(group) > 1:  # on a cycle, every member is upstream of every member
                for member in group:
                    mask |= 1 << self.document_position(member)
            for member in group:
                for source in self.predecessors(member):
                    if source not in members:
                        mask |= masks[source] | (1 << self.document_position(source))
            masks.update(dict.fromkeys(group, mask))
        return masks

    def is_upstream(self, candidate: str, node_id: str) -> bool:
        """Whether `candidate` is among `ancestors(node_id)`, without building the set."""
        if candidate not in self.nodes_by_id or node_id not in self.nodes_by_id:
            return False
        bit = 1 << self.document_position(candidate)
        current: str | None = node_id
        while current is not None:
            scope = self.scope_of(current)
            if scope == self.scope_of(candidate) and self._local_mask(scope)[current] & bit:
                return True
            if scope == candidate:
                return True
            current = scope
        return False

    def ancestors(self, node_id: str) -> set[str]:
        """Upstream nodes along edges within the node's scope; for a node in a loop body, also
        the loop node and the loop's own ancestors. Memoized."""
        if node_id not in self._ancestors:
            found: set[str] = set()
            scope = self.scope_of(node_id)
            mask = self._local_mask(scope).get(node_id, 0)
            found.update(
                other
                for other in self.scope_nodes(scope)
                if mask >> self.document_position(other) & 1
            )
            if scope is not None:
                found.add(scope)
                found |= self.ancestors(scope)
            self._ancestors[node_id] = found
        return self._ancestors[node_id]
