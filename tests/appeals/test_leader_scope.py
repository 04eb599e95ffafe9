"""A street leader reads the appeals of the street only; a district leader reads the whole district."""

from __future__ import annotations

import pytest

import factories
from xihu.appeals import service as appeal_service
from xihu.core.errors import NotFound

XIXI, BEISHAN = "330106004", "330106005"


@pytest.fixture
def two_streets(session):  # type: ignore[no-untyped-def]
    """One appeal in 西溪街道 and one in another street."""
    here = factories.submitted(session, street_id=factories.unit(session, XIXI))
    there = factories.submitted(session, street_id=factories.unit(session, BEISHAN))
    session.commit()
    return here, there


def _codes(session, actor) -> set[str]:  # type: ignore[no-untyped-def]
    page = appeal_service.search(session=session, actor=actor, size=100)
    return {a.tracking_code for a in page.items}


def test_street_leader_reads_only_the_street(session, actor_of, two_streets) -> None:
    here, there = two_streets
    leader = actor_of("leader", XIXI)
    codes = _codes(session, leader)
    assert here.tracking_code in codes
    assert there.tracking_code not in codes
    assert appeal_service.read(session=session, actor=leader, appeal_id=here.id).id == here.id
    with pytest.raises(NotFound):
        appeal_service.read(session=session, actor=leader, appeal_id=there.id)


def test_district_leader_reads_everything_masked(session, actor_of, two_streets) -> None:
    here, there = two_streets
    leader = actor_of("leader", "330106")
    assert {here.tracking_code, there.tracking_code} <= _codes(session, leader)
    seen = appeal_service.read(session=session, actor=leader, appeal_id=there.id)
    assert seen.citizen_phone != "13812345678"  # no appeal.read_personal: the phone stays masked
