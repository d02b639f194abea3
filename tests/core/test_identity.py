"""Identity groups: union-find over persons sharing an identifier, checked against a
plain graph search over the same records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lijian.core.identity import IdentityGroups, identifiers_of


def test_a_shared_value_of_each_identifier_links_two_persons():
    for kind in ("device_id", "card_hash", "phone_hash"):
        g = IdentityGroups()
        assert g.record("a", [(kind, "v1")]) == []
        assert g.record("b", [(kind, "v1")]) == ["a"]
        assert g.members("b") == ["a", "b"] and g.find("b") == "a"


def test_the_same_value_under_another_kind_does_not_link():
    g = IdentityGroups()
    g.record("a", [("device_id", "x")])
    g.record("b", [("card_hash", "x")])
    assert g.members("a") == ["a"] and g.members("b") == ["b"]


def test_links_are_transitive_and_the_first_person_is_the_key():
    g = IdentityGroups()
    g.record("c", [("card_hash", "k1")])
    g.record("a", [("device_id", "d1")])
    g.record("b", [("device_id", "d1"), ("card_hash", "k1")])
    assert g.members("a") == ["c", "a", "b"]
    assert {g.find(p) for p in "abc"} == {"c"}


def test_would_join_changes_nothing():
    g = IdentityGroups()
    g.record("a", [("device_id", "d1")])
    assert g.would_join("b", [("device_id", "d1")]) == ["b", "a"]
    assert g.would_be_members("b", [("device_id", "d1")]) == ["b", "a"]
    assert g.members("a") == ["a"] and g.owner(("device_id", "d1")) == "a"
    assert g.new_identifiers("a", [("device_id", "d1")]) == []
    assert g.new_identifiers("b", [("device_id", "d1")]) == [("device_id", "d1")]


def test_identifiers_of_takes_only_the_listed_kinds():
    assert identifiers_of(("card_hash",), "d", "c", "p") == [("card_hash", "c")]
    assert identifiers_of(("device_id", "phone_hash"), "d", None, "") == [("device_id", "d")]


def _components(records: list[tuple[str, list[tuple[str, str]]]]) -> set[frozenset[str]]:
    """Connected components of the person-identifier graph, by breadth-first search."""
    edges: dict[str, set[str]] = {}
    for person, idents in records:
        edges.setdefault(person, set())
        for ident in idents:
            node = "id:" + ident[0] + "=" + ident[1]
            edges[person].add(node)
            edges.setdefault(node, set()).add(person)
    seen: set[str] = set()
    out: set[frozenset[str]] = set()
    for start in edges:
        if start.startswith("id:") or start in seen:
            continue
        comp, todo = set(), [start]
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if not n.startswith("id:"):
                comp.add(n)
            todo.extend(edges[n])
        out.add(frozenset(comp))
    return out


records_st = st.lists(
    st.tuples(
        st.sampled_from([f"p{i}" for i in range(12)]),
        st.lists(
            st.tuples(
                st.sampled_from(["device_id", "card_hash", "phone_hash"]), st.sampled_from("uvwxyz")
            ),
            max_size=3,
        ),
    ),
    max_size=40,
)


@given(records_st)
def test_groups_are_the_connected_components_and_survive_a_snapshot(records):
    g = IdentityGroups()
    first_seen: list[str] = []
    for person, idents in records:
        g.record(person, idents)
        if person not in first_seen:
            first_seen.append(person)
    groups = {frozenset(g.members(p)) for p, _ in records}
    assert groups == _components(records)
    for p, _ in records:
        members = g.members(p)
        # The key is the member recorded first; members are listed in recording order.
        assert g.find(p) == members[0]
        assert members == sorted(members, key=first_seen.index)
    h = IdentityGroups.from_state(g.to_state())
    for p, _ in records:
        assert h.members(p) == g.members(p)
    for _, idents in records:
        for ident in idents:
            assert h.owner(ident) == g.owner(ident)
