"""The accounts a cluster's nodes make: from the SSH policy, with uids that depend on the
login alone, distinct within a cluster."""

from __future__ import annotations

import pytest

from clusterplane.domain import accounts
from clusterplane.domain.accounts import DEFAULT_LOGIN, UID_BASE, UID_SPAN, login_uids, node_logins
from clusterplane.domain.ssh_policy import DEFAULT, SshPolicy


def test_a_cluster_that_allows_any_login_gets_the_default_one_and_never_root():
    assert node_logins(DEFAULT) == (DEFAULT_LOGIN,) == ("ubuntu",)
    listed = SshPolicy(allowed_logins=("bob", "root", "alice", "bob"))
    assert node_logins(listed) == ("alice", "bob")
    assert node_logins(SshPolicy(allowed_logins=())) == ()


def test_a_logins_uid_is_the_same_whatever_other_logins_the_cluster_has():
    alone = login_uids(("alice",))["alice"]
    assert login_uids(("bob", "alice", "carol"))["alice"] == alone
    assert UID_BASE <= alone < UID_BASE + UID_SPAN
    assert len(set(login_uids(tuple(f"user{i}" for i in range(500))).values())) == 500


def test_logins_whose_hashes_collide_get_distinct_uids_in_name_order(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(accounts, "_hashed_uid", lambda name: UID_BASE + UID_SPAN - 1)
    assert login_uids(("b", "a", "c")) == {
        "a": UID_BASE + UID_SPAN - 1,
        "b": UID_BASE,  # wrapped round within the range
        "c": UID_BASE + 1,
    }
