"""Resolving driver selectors against a region's catalogue, and add-on merge rules."""

from __future__ import annotations

import pytest

from clusterplane.db.rows import RegionRow
from clusterplane.domain.enums import ClusterType
from clusterplane.errors import InvalidRequest
from clusterplane.services.access.auth import KEY_PATTERN, generate_key_text
from clusterplane.services.capacity.catalog import resolve_driver
from clusterplane.services.clusters import addons

REGION = RegionRow(
    name="r1",
    network="10.0.0.0/16",
    control_plane={},
    driver_versions=[
        {
            "id": "cu126-560-2204",
            "cuda_version": "12.6",
            "nvidia_driver_version": "560",
            "os": "ubuntu-22.04",
        },
        {
            "id": "cu128-570-2204",
            "cuda_version": "12.8",
            "nvidia_driver_version": "570",
            "os": "ubuntu-22.04",
        },
        {
            "id": "cu128-570-2404",
            "cuda_version": "12.8",
            "nvidia_driver_version": "570",
            "os": "ubuntu-24.04",
        },
    ],
)


def resolve(**kwargs: str | None) -> str:
    args: dict[str, str | None] = {
        "nvidia_version_id": None,
        "cuda_version": None,
        "nvidia_driver_version": None,
    }
    args.update(kwargs)
    return resolve_driver(REGION, **args).id


def test_a_catalogue_id_selects_its_entry():
    assert resolve(nvidia_version_id="cu128-570-2404") == "cu128-570-2404"


def test_a_bare_legacy_cuda_version_selects_the_ubuntu_22_04_image():
    assert resolve(cuda_version="12.8", nvidia_driver_version="570") == "cu128-570-2204"


def test_an_os_suffixed_legacy_cuda_version_selects_that_os():
    assert resolve(cuda_version="12.8-ubuntu-24.04", nvidia_driver_version="570") == (
        "cu128-570-2404"
    )


def test_no_selector_at_all_takes_the_newest_entry():
    assert resolve().startswith("cu128")


def test_selectors_naming_different_entries_are_refused():
    with pytest.raises(InvalidRequest, match="different"):
        resolve(
            nvidia_version_id="cu126-560-2204", cuda_version="12.8", nvidia_driver_version="570"
        )


def test_an_unknown_pair_names_the_pairs_that_exist():
    with pytest.raises(InvalidRequest, match=r"12\.6/560"):
        resolve(cuda_version="11.0", nvidia_driver_version="450")


def test_slurm_only_add_ons_are_refused_on_kubernetes():
    with pytest.raises(InvalidRequest, match="SLURM"):
        addons.validate_new([{"name": "w", "add_on_type": "slurm_web"}], ClusterType.KUBERNETES)


def test_an_add_on_without_config_is_enabled():
    created = addons.validate_new([{"name": "h", "add_on_type": "headlamp"}], ClusterType.SLURM)
    assert addons.enabled(created) == created


def test_an_update_merges_config_and_can_switch_an_add_on_off():
    current = addons.validate_new(
        [{"name": "headlamp", "add_on_type": "headlamp"}], ClusterType.KUBERNETES
    )
    updated = addons.merge_updates(
        current,
        [{"name": "headlamp", "config": {"headlamp": {"enabled": False}}}],
        ClusterType.KUBERNETES,
    )
    assert addons.enabled(updated) == []
    assert addons.enabled(current) != [], "the stored list is not modified in place"


def test_an_update_naming_an_unknown_add_on_is_refused():
    with pytest.raises(InvalidRequest, match="no add-on named"):
        addons.merge_updates([], [{"name": "grafana"}], ClusterType.KUBERNETES)


def test_generated_keys_have_the_accepted_shape_and_are_unique():
    keys = {generate_key_text() for _ in range(100)}
    assert len(keys) == 100 and all(KEY_PATTERN.match(k) for k in keys)


def test_an_operator_chosen_key_carries_no_id_and_none_is_derived_from_its_hash():
    from clusterplane.services.access.auth import split_key

    assert split_key("correct-horse-battery-staple-42") == (
        None,
        "correct-horse-battery-staple-42",
    )
    issued = generate_key_text()
    assert split_key(issued) == (issued[3:23], issued[24:])


def test_kubernetes_only_add_ons_are_refused_on_slurm():
    for kind in ("dashboard", "ingress"):
        with pytest.raises(InvalidRequest, match="KUBERNETES"):
            addons.validate_new([{"name": kind, "add_on_type": kind}], ClusterType.SLURM)


def test_an_add_on_config_holds_only_its_own_section():
    with pytest.raises(InvalidRequest) as caught:
        addons.validate_new(
            [{"name": "h", "add_on_type": "headlamp", "config": {"ingress": {"enabled": True}}}],
            ClusterType.KUBERNETES,
        )
    assert caught.value.param == "add_ons.0.config.ingress"


def test_a_cluster_config_update_merges_sub_objects_and_replaces_plain_keys():
    current = {
        "load_balancer": "NONE",
        "jumphost_enabled": True,
        "slurm_startup_scripts": {"worker_prolog": "a", "worker_epilog": "b"},
    }
    merged = addons.merge_cluster_config(
        current,
        {"load_balancer": "TRAEFIK", "slurm_startup_scripts": {"worker_prolog": "c"}},
        ClusterType.SLURM,
    )
    assert merged == {
        "load_balancer": "TRAEFIK",
        "jumphost_enabled": True,
        "slurm_startup_scripts": {"worker_prolog": "c", "worker_epilog": "b"},
    }
    assert current["slurm_startup_scripts"] == {"worker_prolog": "a", "worker_epilog": "b"}


def test_slurm_startup_scripts_are_refused_on_kubernetes_and_capped_in_total():
    with pytest.raises(InvalidRequest, match="SLURM"):
        addons.check_cluster_config(
            {"slurm_startup_scripts": {"worker_prolog": "x"}}, ClusterType.KUBERNETES
        )
    big = {name: "#" * 65_536 for name in ("a", "b", "c", "d", "e")}
    with pytest.raises(InvalidRequest, match="add up to"):
        addons.check_cluster_config({"slurm_startup_scripts": big}, ClusterType.SLURM)
