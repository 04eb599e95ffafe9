"""Digits that are not ASCII ("²" passes str.isdigit but int() refuses it) in ids, filters and tokens get
a 4xx, never a 500."""

from __future__ import annotations

import factories
from conftest import login

ODD = "²"


def test_odd_digits_in_public_and_staff_parameters_are_refused_not_crashed(
    client, session, make_user
) -> None:
    factories.submitted(session)
    session.commit()
    assert client.get(f"/open311/v2/tokens/{ODD}.json").status_code == 404
    listed = client.get(f"/open311/v2/requests.json?service_request_id={ODD}")
    assert listed.status_code == 200 and listed.json() == []  # no such request
    login(client, make_user("admin").username)
    assert client.get(f"/staff/analysis?area={ODD}").status_code == 422
    assert client.get(f"/staff/dispatch?street={ODD}").status_code == 422
    batch = client.post(
        "/staff/batch",
        data={"csrf_token": client.cookies.get("xihu_csrf"), "action": "sign", "ids": ODD},
    )
    assert batch.status_code == 200 and "请先勾选诉求" in batch.text
