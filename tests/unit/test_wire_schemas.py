"""The pydantic wire models against the spec and the official `together` 3.1.1 SDK types."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import together.types as sdk
import together.types.cluster as sdk_cluster
import together.types.cluster_create_params as sdk_create
import together.types.cluster_list_regions_response as sdk_regions
import together.types.cluster_update_params as sdk_update
import together.types.clusters as sdk_clusters
import together.types.clusters.remediation as sdk_remediation
from pydantic import BaseModel, ValidationError
from together import Together

from clusterplane.api import schemas as s
from clusterplane.domain.enums import (
    BillingType,
    ClusterPhase,
    ClusterStatus,
    ClusterType,
    GpuType,
    LoadBalancer,
    NodeLifecycleReason,
    NodePhase,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
    VolumeStatus,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "billing_type": "ON_DEMAND",
        "cluster_name": "train-1",
        "gpu_type": "H100_SXM",
        "num_gpus": 16,
        "region": "us-central-8",
        "nvidia_version_id": "nv-570-12.8-ubuntu-22.04",
    }
    body.update(overrides)
    return body


def rejection(model: type[BaseModel], body: Any) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return s.format_validation_error(info.value)


# --- null, unknown fields and the two create variants ------------------------------------


def test_null_cluster_type_is_treated_as_absent() -> None:
    request = s.CreateClusterRequest.model_validate(create_body(cluster_type=None))
    assert request.cluster_type is None
    assert "cluster_type" not in request.model_fields_set


def test_the_cli_create_body_with_explicit_nulls_is_accepted() -> None:
    body = create_body(cluster_type=None, duration_days=None, volume_id=None, add_ons=None)
    request = s.CreateClusterRequest.model_validate(body)
    assert request.duration_days is None
    assert request.model_fields_set == {
        "billing_type",
        "cluster_name",
        "gpu_type",
        "num_gpus",
        "region",
        "nvidia_version_id",
    }


def test_null_for_a_required_field_is_reported_as_missing() -> None:
    assert rejection(s.CreateClusterRequest, create_body(cluster_name=None)) == (
        "cluster_name: is required",
        "cluster_name",
    )


def test_null_inside_a_nested_object_is_treated_as_absent() -> None:
    body = create_body(
        cluster_config={"load_balancer": "NONE", "ingress": None, "jumphost_enabled": None}
    )
    config = s.CreateClusterRequest.model_validate(body).cluster_config
    assert config is not None
    assert config.ingress is None
    assert config.model_fields_set == {"load_balancer"}


def test_unknown_fields_are_ignored_at_every_level() -> None:
    body = create_body(
        surprise=1,
        add_ons=[
            {
                "name": "headlamp",
                "add_on_type": "headlamp",
                "config": {"headlamp": {"enabled": True, "x": 1}, "torchpass": {"enabled": True}},
            }
        ],
    )
    request = s.CreateClusterRequest.model_validate(body)
    assert "surprise" not in request.model_dump()
    assert request.add_ons is not None
    config = request.add_ons[0].config
    assert config is not None and config.headlamp is not None
    assert config.headlamp.enabled is True


def test_the_nvidia_version_variant_is_accepted() -> None:
    request = s.CreateClusterRequest.model_validate(create_body())
    assert request.nvidia_version_id == "nv-570-12.8-ubuntu-22.04"
    assert request.billing_type is BillingType.ON_DEMAND
    assert request.gpu_type is GpuType.H100_SXM


def test_the_legacy_cuda_and_driver_variant_is_accepted() -> None:
    body = create_body(cuda_version="12.8", nvidia_driver_version="570")
    del body["nvidia_version_id"]
    request = s.CreateClusterRequest.model_validate(body)
    assert (request.cuda_version, request.nvidia_driver_version) == ("12.8", "570")
    assert request.nvidia_version_id is None


def test_a_2x_body_without_a_version_selector_passes_the_schema() -> None:
    body = create_body(auto_scaled=False, gpu_node_failover_enabled=True, driver_version="x")
    del body["nvidia_version_id"]
    request = s.CreateClusterRequest.model_validate(body)
    assert request.gpu_node_failover_enabled is True
    assert request.driver_version == "x"


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"cuda_version": "12.8"}, "nvidia_driver_version"),
        ({"nvidia_driver_version": "570"}, "cuda_version"),
    ],
)
def test_half_of_the_legacy_version_pair_is_rejected(given: dict[str, str], missing: str) -> None:
    message, param = rejection(s.CreateClusterRequest, create_body(**given))
    assert param == missing
    assert message.startswith(f"{missing}: is required when")


# --- integers and strings ----------------------------------------------------------------

INT_FIELDS = [
    "num_gpus",
    "num_reserved_gpus",
    "num_capacity_pool_gpus",
    "num_preemptible_gpus",
    "auto_scale_max_gpus",
    "duration_days",
    "slurm_shm_size_gib",
]


@pytest.mark.parametrize("field", INT_FIELDS)
def test_a_bool_is_rejected_where_an_integer_is_expected(field: str) -> None:
    assert rejection(s.CreateClusterRequest, create_body(**{field: True})) == (
        f"{field}: must be an integer",
        field,
    )


@pytest.mark.parametrize("value", ["16", 16.0, [16], {"n": 16}])
def test_strings_floats_and_containers_are_rejected_for_integers(value: Any) -> None:
    assert rejection(s.CreateClusterRequest, create_body(num_gpus=value))[1] == "num_gpus"


@pytest.mark.parametrize("value", ["true", 1, 0])
def test_only_real_json_booleans_are_accepted_for_booleans(value: Any) -> None:
    assert rejection(s.CreateClusterRequest, create_body(install_traefik=value)) == (
        "install_traefik: must be a boolean",
        "install_traefik",
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("num_gpus", 12, "must be a multiple of 8"),
        ("num_gpus", 0, "must be at least 8"),
        ("num_gpus", -8, "must be at least 8"),
        ("num_preemptible_gpus", 4, "must be a multiple of 8"),
        ("num_preemptible_gpus", -8, "must be at least 0"),
        ("num_reserved_gpus", 9, "must be a multiple of 8"),
        ("num_capacity_pool_gpus", 1, "must be a multiple of 8"),
        ("auto_scale_max_gpus", 20, "must be a multiple of 8"),
        ("num_gpus", 10**30, "must be at most 65536"),
    ],
)
def test_gpu_counts_must_be_non_negative_multiples_of_8(
    field: str, value: int, expected: str
) -> None:
    assert rejection(s.CreateClusterRequest, create_body(**{field: value})) == (
        f"{field}: {expected}",
        field,
    )


def test_zero_preemptible_gpus_is_a_valid_multiple_of_8() -> None:
    request = s.CreateClusterRequest.model_validate(create_body(num_preemptible_gpus=0))
    assert request.num_preemptible_gpus == 0


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"billing_type": "RESERVED", "duration_days": 0}, "duration_days"),
        ({"billing_type": "RESERVED", "duration_days": 91}, "duration_days"),
        ({"cluster_type": "SLURM", "slurm_shm_size_gib": 0}, "slurm_shm_size_gib"),
        ({"cluster_type": "SLURM", "slurm_shm_size_gib": 4097}, "slurm_shm_size_gib"),
    ],
)
def test_day_and_memory_ranges_are_enforced(overrides: dict[str, Any], param: str) -> None:
    assert rejection(s.CreateClusterRequest, create_body(**overrides))[1] == param


@pytest.mark.parametrize("name", ["a", "train-1", "Team_A.run-2", "9" * 63])
def test_dns_label_like_cluster_names_are_accepted(name: str) -> None:
    assert (
        s.CreateClusterRequest.model_validate(create_body(cluster_name=name)).cluster_name == name
    )


@pytest.mark.parametrize(
    "name", ["", " ", "  x", "-lead", "has space", "tab\tname", "nul\x00", "é", "x" * 64, 7]
)
def test_empty_spaced_control_or_overlong_cluster_names_are_rejected(name: Any) -> None:
    assert rejection(s.CreateClusterRequest, create_body(cluster_name=name))[1] == "cluster_name"


@pytest.mark.parametrize(
    ("model", "body", "param"),
    [
        (
            s.CreateRemediationRequest,
            {"mode": "REMEDIATION_MODE_VM_ONLY", "reason": "a\x00b"},
            "reason",
        ),
        (s.RejectRemediationRequest, {"comment": "\x00"}, "comment"),
        (s.UpdateVolumeRequest, {"volume_id": "vol\x00"}, "volume_id"),
        (
            s.CreateClusterRequest,
            create_body(
                cluster_config={
                    "load_balancer": "NONE",
                    "slurm_startup_scripts": {"worker_prolog": "#!/bin/sh\n\x00"},
                }
            ),
            "cluster_config.slurm_startup_scripts.worker_prolog",
        ),
        (s.CreateClusterRequest, create_body(project_id="p\ud800"), "project_id"),
    ],
)
def test_nul_bytes_and_lone_surrogates_are_rejected_in_strings(
    model: type[BaseModel], body: dict[str, Any], param: str
) -> None:
    assert rejection(model, body)[1] == param


def test_scripts_keep_newlines_and_tabs() -> None:
    script = "#!/bin/bash\n\techo hi\r\n"
    body = create_body(
        cluster_config={"load_balancer": "NONE", "slurm_startup_scripts": {"worker_epilog": script}}
    )
    config = s.CreateClusterRequest.model_validate(body).cluster_config
    assert config is not None and config.slurm_startup_scripts is not None
    assert config.slurm_startup_scripts.worker_epilog == script


def test_scripts_over_64_kib_are_rejected() -> None:
    body = create_body(
        cluster_config={
            "load_balancer": "NONE",
            "slurm_startup_scripts": {"worker_epilog": "x" * 65_537},
        }
    )
    message, _ = rejection(s.CreateClusterRequest, body)
    assert message.endswith("must be at most 65536 characters")


# --- datetimes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-01T00:00:00", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01T00:00:00Z", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01t00:00:00z", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01 00:00:00", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01T05:30:00+05:30", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2024-12-31T23:00:00-01:00", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01T00:00:00.5", datetime(2025, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)),
        ("2025-01-01T00:00:00.123456789Z", datetime(2025, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)),
    ],
)
def test_rfc3339_datetimes_are_read_as_aware_utc(text: str, expected: datetime) -> None:
    body = create_body(billing_type="RESERVED", duration_days=3, reservation_start_time=text)
    parsed = s.CreateClusterRequest.model_validate(body).reservation_start_time
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


def test_naive_datetimes_are_taken_as_utc() -> None:
    parsed = s.UpdateClusterRequest.model_validate(
        {"reservation_end_time": "2026-03-04T05:06:07"}
    ).reservation_end_time
    assert parsed == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "tomorrow",
        "2025-13-01",
        "2025-13-01T00:00:00",
        "2025-02-30T00:00:00Z",
        "2025-01-01",
        "2025-01-01T24:00:00Z",
        "2025-01-01T00:00:60Z",
        "2025-01-01T00:00:00+25:00",
        "2025-01-01T00:00:00+0100",
        "2025-01-01T00:00Z",
        "0001-01-01T00:00:00+01:00",
        "",
        1_700_000_000,
        1.5,
        True,
    ],
)
def test_bad_datetimes_are_rejected_with_a_clear_message(value: Any) -> None:
    message, param = rejection(s.UpdateClusterRequest, {"reservation_end_time": value})
    assert param == "reservation_end_time"
    assert "RFC 3339" in message or "not a valid date-time" in message


# --- cross-field rules -------------------------------------------------------------------


def scheduled(**overrides: Any) -> dict[str, Any]:
    return create_body(
        billing_type="SCHEDULED_CAPACITY",
        reservation_start_time="2026-02-01T00:00:00Z",
        reservation_end_time="2026-02-08T00:00:00Z",
        **overrides,
    )


def test_scheduled_capacity_with_a_window_is_accepted() -> None:
    request = s.CreateClusterRequest.model_validate(scheduled())
    assert request.reservation_end_time == datetime(2026, 2, 8, tzinfo=UTC)


@pytest.mark.parametrize("dropped", ["reservation_start_time", "reservation_end_time"])
def test_scheduled_capacity_requires_both_reservation_times(dropped: str) -> None:
    body = scheduled()
    body[dropped] = None
    assert rejection(s.CreateClusterRequest, body) == (
        f"{dropped}: is required for SCHEDULED_CAPACITY billing",
        dropped,
    )


@pytest.mark.parametrize(
    "end", ["2026-02-01T00:00:00Z", "2026-01-31T23:59:59Z", "2026-02-01T05:00:00+06:00"]
)
def test_scheduled_capacity_end_must_be_after_start(end: str) -> None:
    assert rejection(s.CreateClusterRequest, scheduled() | {"reservation_end_time": end}) == (
        "reservation_end_time: must be later than reservation_start_time",
        "reservation_end_time",
    )


@pytest.mark.parametrize("billing", ["ON_DEMAND", "SCHEDULED_CAPACITY"])
def test_duration_days_is_only_accepted_for_reserved_billing(billing: str) -> None:
    body = scheduled(duration_days=3) | {"billing_type": billing}
    assert rejection(s.CreateClusterRequest, body)[1] == "duration_days"


def test_reserved_billing_needs_a_duration_or_an_end_time() -> None:
    assert (
        rejection(s.CreateClusterRequest, create_body(billing_type="RESERVED"))[1]
        == "duration_days"
    )
    for extra in ({"duration_days": 3}, {"reservation_end_time": "2026-02-01T00:00:00Z"}):
        s.CreateClusterRequest.model_validate(create_body(billing_type="RESERVED", **extra))


def test_volume_id_and_shared_volume_are_mutually_exclusive() -> None:
    volume = {"volume_name": "data", "size_tib": 1, "region": "us-central-8"}
    body = create_body(volume_id="vol-1", shared_volume=volume)
    assert rejection(s.CreateClusterRequest, body) == (
        "shared_volume: cannot be combined with volume_id",
        "shared_volume",
    )
    assert s.CreateClusterRequest.model_validate(create_body(shared_volume=volume)).shared_volume


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"num_reserved_gpus": 24}, "num_reserved_gpus"),
        ({"capacity_pool_id": "pool-1", "num_capacity_pool_gpus": 24}, "num_capacity_pool_gpus"),
        (
            {"capacity_pool_id": "pool-1", "num_capacity_pool_gpus": 8, "num_reserved_gpus": 16},
            "num_capacity_pool_gpus",
        ),
        ({"num_capacity_pool_gpus": 8}, "capacity_pool_id"),
    ],
)
def test_reserved_and_pool_gpus_must_fit_within_num_gpus(
    overrides: dict[str, Any], param: str
) -> None:
    assert rejection(s.CreateClusterRequest, create_body(**overrides))[1] == param


def test_slurm_clusters_require_a_shared_memory_size() -> None:
    assert rejection(s.CreateClusterRequest, create_body(cluster_type="SLURM")) == (
        "slurm_shm_size_gib: is required when cluster_type is SLURM",
        "slurm_shm_size_gib",
    )
    request = s.CreateClusterRequest.model_validate(
        create_body(cluster_type="SLURM", slurm_shm_size_gib=64)
    )
    assert request.cluster_type is ClusterType.SLURM


@pytest.mark.parametrize("flag", ["auto_scale", "auto_scaled"])
def test_auto_scale_requires_a_maximum_of_at_least_num_gpus(flag: str) -> None:
    assert (
        rejection(s.CreateClusterRequest, create_body(**{flag: True}))[1] == "auto_scale_max_gpus"
    )
    too_small = create_body(**{flag: True, "auto_scale_max_gpus": 8})
    assert rejection(s.CreateClusterRequest, too_small) == (
        "auto_scale_max_gpus: must be at least num_gpus",
        "auto_scale_max_gpus",
    )
    ok = s.CreateClusterRequest.model_validate(
        create_body(**{flag: True, "auto_scale_max_gpus": 32})
    )
    assert ok.wants_auto_scale


def test_add_on_names_must_be_unique() -> None:
    add_on = {"name": "headlamp", "add_on_type": "headlamp"}
    assert rejection(s.CreateClusterRequest, create_body(add_ons=[add_on, add_on]))[1] == "add_ons"


# --- nested objects ----------------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, {"load_balancer": None}, {"ingress": {"enabled": True}}])
def test_cluster_config_without_load_balancer_is_rejected(config: dict[str, Any]) -> None:
    expected = ("cluster_config.load_balancer: is required", "cluster_config.load_balancer")
    assert rejection(s.CreateClusterRequest, create_body(cluster_config=config)) == expected
    assert rejection(s.UpdateClusterRequest, {"cluster_config": config}) == expected


def test_cluster_config_with_load_balancer_is_accepted() -> None:
    config = s.ClusterConfigRequest.model_validate(
        {"load_balancer": "TRAEFIK", "gpu_operator_version": "v24.6.2", "ssh_ca_enabled": True}
    )
    assert config.load_balancer is LoadBalancer.TRAEFIK


OIDC = {
    "issuer_url": "https://accounts.google.com",
    "client_id": "cluster-client",
    "username_claim": "email",
    "username_prefix": "oidc:",
    "group_claim": "groups",
    "group_prefix": "",
}


def test_oidc_config_needs_every_field_but_the_ca_cert() -> None:
    assert s.OidcConfigRequest.model_validate(OIDC).ca_cert is None
    for key in OIDC:
        body = create_body(oidc_config={k: v for k, v in OIDC.items() if k != key})
        assert rejection(s.CreateClusterRequest, body) == (
            f"oidc_config.{key}: is required",
            f"oidc_config.{key}",
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://accounts.google.com",
        "accounts.google.com",
        "https://",
        "https://a b",
        "https://h:99999",
    ],
)
def test_oidc_issuer_must_be_an_https_url(url: str) -> None:
    assert rejection(s.OidcConfigRequest, OIDC | {"issuer_url": url})[1] == "issuer_url"


def test_add_on_list_errors_point_at_the_item() -> None:
    assert rejection(s.CreateClusterRequest, create_body(add_ons=[{"add_on_type": "x"}])) == (
        "add_ons.0.name: is required",
        "add_ons.0.name",
    )


def test_acceptance_tests_params_are_typed() -> None:
    params = s.AcceptanceTestsParams.model_validate(
        {"enabled": True, "dcgm_diag_level": "DCGM_DIAG_LEVEL_LONG", "gpu_burn_duration": 300}
    )
    assert params.gpu_burn_duration == 300
    assert rejection(s.AcceptanceTestsParams, {"dcgm_diag_level": "LONG"})[1] == "dcgm_diag_level"


# --- update, storage and remediation requests --------------------------------------------


def test_update_is_partial_and_nulls_leave_fields_unchanged() -> None:
    request = s.UpdateClusterRequest.model_validate(
        {"num_gpus": 24, "cluster_type": None, "reservation_end_time": None}
    )
    assert request.model_fields_set == {"num_gpus"}
    assert s.UpdateClusterRequest.model_validate({}).model_fields_set == set()


def test_update_applies_the_same_integer_rules() -> None:
    assert rejection(s.UpdateClusterRequest, {"num_gpus": True})[1] == "num_gpus"
    assert rejection(s.UpdateClusterRequest, {"num_preemptible_gpus": 12})[0] == (
        "num_preemptible_gpus: must be a multiple of 8"
    )
    assert rejection(s.UpdateClusterRequest, {"num_gpus": 8, "num_reserved_gpus": 16})[1] == (
        "num_reserved_gpus"
    )


def test_update_add_ons_take_a_name_and_a_config_like_the_cli_sends() -> None:
    request = s.UpdateClusterRequest.model_validate(
        {"add_ons": [{"name": "headlamp", "config": {"headlamp": {"enabled": False}}}]}
    )
    assert request.add_ons is not None
    assert request.add_ons[0].name == "headlamp"


@pytest.mark.parametrize(
    ("size", "ok"), [(1, True), (10_000, True), (0, False), (10_001, False), (True, False)]
)
def test_volume_sizes_are_whole_tib_between_1_and_10000(size: Any, ok: bool) -> None:
    body = {"volume_name": "data", "size_tib": size, "region": "us-central-8"}
    if ok:
        assert s.CreateVolumeRequest.model_validate(body).size_tib == size
    else:
        assert rejection(s.CreateVolumeRequest, body)[1] == "size_tib"


def test_volume_update_needs_only_the_volume_id() -> None:
    request = s.UpdateVolumeRequest.model_validate({"volume_id": "vol-1", "size_tib": None})
    assert request.size_tib is None
    assert rejection(s.UpdateVolumeRequest, {"size_tib": 2}) == (
        "volume_id: is required",
        "volume_id",
    )


def test_remediation_create_requires_a_known_mode() -> None:
    assert rejection(s.CreateRemediationRequest, {}) == ("mode: is required", "mode")
    assert rejection(s.CreateRemediationRequest, {"mode": "VM_ONLY"})[1] == "mode"
    request = s.CreateRemediationRequest.model_validate({"mode": "REMEDIATION_MODE_REBOOT_VM"})
    assert request.mode is RemediationMode.REBOOT_VM


def test_remediation_reason_is_limited_to_1024_characters() -> None:
    body = {"mode": "REMEDIATION_MODE_VM_ONLY", "reason": "x" * 1025}
    assert rejection(s.CreateRemediationRequest, body) == (
        "reason: must be at most 1024 characters",
        "reason",
    )


def test_host_power_cycle_cannot_be_an_approval_override() -> None:
    message, param = rejection(
        s.ApproveRemediationRequest, {"mode": "REMEDIATION_MODE_HOST_POWER_CYCLE"}
    )
    assert param == "mode"
    assert "approval override" in message
    approve = s.ApproveRemediationRequest.model_validate({"comment": "ok", "mode": None})
    assert approve.mode is None


# --- format_validation_error -------------------------------------------------------------


def test_validation_messages_name_the_field_and_carry_no_urls() -> None:
    with pytest.raises(ValidationError) as info:
        s.CreateClusterRequest.model_validate(create_body(num_gpus=12, billing_type="NOPE"))
    message, param = s.format_validation_error(info.value)
    assert param == "billing_type"
    assert message == "billing_type: must be one of 'RESERVED', 'ON_DEMAND' or 'SCHEDULED_CAPACITY'"
    assert "http" not in message and "pydantic" not in message.lower()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("[1, 2]", "request body must be a JSON object"), ("{", "request body is not valid JSON")],
)
def test_body_level_errors_have_no_param(raw: str, expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        s.CreateClusterRequest.model_validate_json(raw)
    assert s.format_validation_error(info.value) == (expected, None)


def test_error_envelope_has_the_shape_the_cli_reads() -> None:
    envelope = s.ErrorEnvelope.of(
        "num_gpus: must be a multiple of 8", "invalid_request_error", param="num_gpus"
    )
    assert envelope.model_dump(mode="json") == {
        "error": {
            "message": "num_gpus: must be a multiple of 8",
            "type": "invalid_request_error",
            "param": "num_gpus",
            "code": None,
        }
    }


# --- responses ---------------------------------------------------------------------------


def remediation(**overrides: Any) -> s.RemediationResponse:
    fields: dict[str, Any] = {
        "id": "rem-1",
        "cluster_id": "c-1",
        "instance_id": "inst-1",
        "mode": RemediationMode.VM_ONLY,
        "state": RemediationState.PENDING,
        "trigger": RemediationTrigger.MANUAL,
        "instance_name": "gpu-dp-1",
        "reason": "xid 79",
        "requested_by": "alice",
        "reviewed_by": "bob",
        "review_time": T0,
        "review_comment": "go",
        "create_time": T0,
        "start_time": T0,
        "end_time": T0,
        "update_time": T0,
        "error_message": "",
        "active_health_check_run_id": "ahc-1",
        "passive_health_check_event_id": "phc-1",
        "linked_alerts": [
            s.LinkedAlertResponse(
                passive_health_check_alert_id="a-1",
                alert_name="DmesgXidError",
                severity="PHC_SEVERITY_CRITICAL",
                started_at=T0,
                target_vm="vm-1",
                cluster_id="c-1",
                annotations={"summary": "xid"},
                annotation=s.LinkedAlertAnnotationResponse(
                    title="Xid",
                    description="d",
                    summary_line="s",
                    slurm_node_unavailable=s.SlurmNodeUnavailableResponse(reason="down"),
                    xid=s.XidAnnotationResponse(
                        events=[s.XidEventResponse(xid_code="79", mnemonic="GPU_FELL_OFF", count=1)]
                    ),
                ),
                resolved_at=T0,
                instance_id="inst-1",
                node_remediation_intent_id="nri-1",
            )
        ],
    }
    fields.update(overrides)
    return s.RemediationResponse(**fields)


def worker(**overrides: Any) -> s.GPUWorkerNodeResponse:
    fields: dict[str, Any] = {
        "node_id": "gpu-dp-1",
        "node_name": "gpu-dp-1",
        "host_name": "host-1",
        "status": "Running",
        "num_cpu_cores": 192,
        "num_gpus": 8,
        "memory_gib": 2048.0,
        "networks": ["10.0.0.2"],
        "phase_transitions": [
            s.NodePhaseTransitionResponse(phase=NodePhase.RUNNING, transition_time=T0)
        ],
        "instance_id": "inst-1",
        "latest_remediation": remediation(),
        "slurm_worker_hostname": "worker-1.slurm-compute.slurm",
        "public_ipv4": "203.0.113.1",
        "auto_remediation_enabled": True,
        "marked_for_deletion": False,
        "ephemeral_storage": "1Ti",
        "ib_hca_count": 8,
        "ib_hca_type": "ConnectX-7",
        "nvswitch_count": 4,
        "nvswitch_type": "NVSwitch3",
    }
    fields.update(overrides)
    return s.GPUWorkerNodeResponse(**fields)


def minimal_cluster(**overrides: Any) -> s.ClusterResponse:
    fields: dict[str, Any] = {
        "cluster_id": "c-1",
        "cluster_name": "train-1",
        "cluster_type": ClusterType.KUBERNETES,
        "region": "us-central-8",
        "gpu_type": GpuType.H100_SXM,
        "billing_type": BillingType.ON_DEMAND,
        "status": ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES,
        "num_gpus": 16,
        "num_reserved_gpus": 0,
        "num_capacity_pool_gpus": 0,
        "desired_preemptible_gpus": 0,
        "allocated_preemptible_gpus": 0,
        "num_cpu_workers": 0,
        "cuda_version": "12.8",
        "nvidia_driver_version": "570",
        "kube_config": "",
        "project_id": "proj-1",
        "volumes": [],
        "control_plane_nodes": [],
        "gpu_worker_nodes": [],
        "phase_transitions": [],
        "add_ons": [],
    }
    fields.update(overrides)
    return s.ClusterResponse(**fields)


def full_cluster() -> s.ClusterResponse:
    return minimal_cluster(
        status=ClusterStatus.READY,
        kube_config="YXBpVmVyc2lvbjogdjEK",
        volumes=[
            s.VolumeRef(
                volume_id="vol-1", volume_name="data", size_tib=2, status=VolumeStatus.BOUND
            )
        ],
        control_plane_nodes=[
            s.ControlPlaneNodeResponse(
                node_id="cp-1",
                node_name="cp-1",
                host_name="cp-host-1",
                status="Running",
                num_cpu_cores=8,
                memory_gib=32.0,
                network="10.0.0.1",
                phase_transitions=[
                    s.NodePhaseTransitionResponse(phase=NodePhase.BOOTING, transition_time=T0)
                ],
                public_ipv4="203.0.113.9",
            )
        ],
        gpu_worker_nodes=[worker()],
        phase_transitions=[
            s.PhaseTransitionResponse(phase=ClusterPhase.QUEUED, transition_time=T0),
            s.PhaseTransitionResponse(
                phase=ClusterPhase.READY, transition_time=T0 + timedelta(minutes=20)
            ),
        ],
        add_ons=[
            s.AddOnResponse(
                name="headlamp",
                add_on_type="headlamp",
                config=s.AddOnConfig(headlamp=s.Toggle(enabled=True)),
                state=s.AddOnState(headlamp=s.AddOnStateEntry()),
            )
        ],
        capacity_pool_id="pool-1",
        cluster_config=s.ClusterConfigResponse(
            load_balancer=LoadBalancer.NONE,
            kubernetes_dashboard_enabled=False,
            jumphost_enabled=True,
            ssh_ca_enabled=False,
            ingress=s.Toggle(enabled=False),
            observability=s.Toggle(enabled=True),
            gpu_operator_version="v24.6.2",
            network_operator_version="v24.7.0",
            slurm_startup_scripts=s.SlurmStartupScripts(worker_prolog="#!/bin/sh\n"),
        ),
        oidc_config=s.OidcConfigResponse(**OIDC, ca_cert="-----BEGIN CERTIFICATE-----"),
        control_plane_ready=True,
        created_at=T0,
        first_ready_at=T0 + timedelta(minutes=20),
        duration_hours=72,
        reservation_start_time=T0,
        reservation_end_time=T0 + timedelta(days=3),
        install_traefik=False,
        slurm_shm_size_gib=64,
        deleted_gpu_worker_nodes=[worker(node_id="gpu-dp-0", node_name="gpu-dp-0", deleted_at=T0)],
        node_lifecycle_events=[
            s.NodeLifecycleEventResponse(
                node_id="gpu-dp-1",
                reason=NodeLifecycleReason.SCALED_UP,
                message="added",
                timestamp=T0,
            )
        ],
        nvidia_driver_version_id="nv-570-12.8-ubuntu-22.04",
        os_image="ubuntu-22.04",
        machine_cluster_id="mc-1",
        is_in_substrate=False,
        ums_org_id="org-1",
        ums_project_id="proj-1",
    )


def wire(model: BaseModel) -> Any:
    return json.loads(model.model_dump_json())


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00Z"),
        (datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC), "2026-01-01T00:00:00.250000Z"),
        (datetime(2026, 1, 1, 5, 30), "2026-01-01T05:30:00Z"),
        (
            datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2026-01-01T00:00:00Z",
        ),
    ],
)
def test_response_datetimes_serialize_as_utc_with_a_z(value: datetime, text: str) -> None:
    transition = s.PhaseTransitionResponse(phase=ClusterPhase.READY, transition_time=value)
    assert wire(transition)["transition_time"] == text
    assert transition.model_dump()["transition_time"] == text


def test_full_cluster_response_parses_with_the_sdk_cluster_type() -> None:
    body = wire(full_cluster())
    parsed = sdk.Cluster.model_validate(body)
    assert parsed.created_at == T0
    assert parsed.status == "Ready"
    assert parsed.gpu_worker_nodes[0].latest_remediation is not None
    assert parsed.gpu_worker_nodes[0].latest_remediation.linked_alerts is not None
    assert parsed.cluster_config is not None and parsed.cluster_config.load_balancer == "NONE"
    assert_no_unknown_fields(parsed)
    assert_sdk_required_fields_present(sdk.Cluster, body)


def test_minimal_cluster_response_has_every_sdk_required_field() -> None:
    body = wire(minimal_cluster())
    assert_sdk_required_fields_present(sdk.Cluster, body)
    assert body["volumes"] == [] and body["kube_config"] == ""
    sdk.ClusterListResponse.model_validate(
        wire(s.ClusterListResponse(clusters=[minimal_cluster()]))
    )
    assert wire(s.ClusterDeleteResponse(cluster_id="c-1")) == {"cluster_id": "c-1"}


def test_storage_responses_parse_with_the_sdk_types() -> None:
    volume = s.ClusterStorageResponse(
        volume_id="vol-1", volume_name="data", size_tib=4, status=VolumeStatus.PROVISIONING
    )
    parsed = sdk_clusters.ClusterStorage.model_validate(wire(volume))
    assert (parsed.volume_id, parsed.size_tib, parsed.status) == ("vol-1", 4, "provisioning")
    listing = sdk_clusters.StorageListResponse.model_validate(
        wire(s.StorageListResponse(volumes=[volume]))
    )
    assert listing.volumes[0].volume_name == "data"
    deleted = sdk_clusters.StorageDeleteResponse.model_validate(
        wire(s.StorageDeleteResponse(success=True))
    )
    assert deleted.success is True


def test_remediation_responses_parse_with_the_sdk_types() -> None:
    body = wire(remediation())
    parsed = sdk_clusters.Remediation.model_validate(body)
    assert parsed.mode == "REMEDIATION_MODE_VM_ONLY" and parsed.review_time == T0
    assert_no_unknown_fields(parsed)
    assert_sdk_required_fields_present(sdk_clusters.Remediation, body)
    page = s.RemediationListResponse(
        remediations=[remediation()], has_next=False, next_page_token=""
    )
    listing = sdk_clusters.RemediationListResponse.model_validate(wire(page))
    assert listing.has_next is False and listing.next_page_token == ""


def test_region_responses_parse_with_the_sdk_types() -> None:
    regions = s.RegionListResponse(
        regions=[
            s.RegionResponse(
                name="us-central-8",
                supported_instance_types=["H100_SXM"],
                driver_versions=[
                    s.DriverVersionResponse(
                        id="nv-1",
                        cuda_version="12.8",
                        nvidia_driver_version="570",
                        os="ubuntu-22.04",
                    )
                ],
            )
        ]
    )
    parsed = sdk.ClusterListRegionsResponse.model_validate(wire(regions))
    assert parsed.regions[0].driver_versions[0].id == "nv-1"
    assert_no_unknown_fields(parsed)


def test_whoami_responses_have_the_cli_shapes() -> None:
    v3 = s.WhoamiV3Response(
        api_key=s.WhoamiApiKey(id="key_1"),
        organization=s.WhoamiOrganization(id="org_1", name="Org"),
        project=s.WhoamiProject(id="proj_1", name="Default", slug="default"),
    )
    assert wire(v3) == {
        "type": "project_api_key",
        "api_key": {"id": "key_1"},
        "organization": {"id": "org_1", "name": "Org"},
        "project": {"id": "proj_1", "name": "Default", "slug": "default"},
    }
    assert sdk.WhoamiProjectAPIKey.model_validate(wire(v3)).project.slug == "default"
    v1 = s.WhoamiV1Response(
        api_key_id="key_1",
        organization_id="org_1",
        organization_name="Org",
        project_id="proj_1",
        project_name="Default",
        project_slug="default",
    )
    assert wire(v1)["project_id"] == "proj_1" and wire(v1)["user_id"] is None


# --- field-for-field parity with the SDK -------------------------------------------------

RESPONSE_PAIRS: list[tuple[type[BaseModel], Any]] = [
    (s.ClusterResponse, sdk.Cluster),
    (s.ControlPlaneNodeResponse, sdk_cluster.ControlPlaneNode),
    (s.GPUWorkerNodeResponse, sdk_cluster.GPUWorkerNode),
    (s.GPUWorkerNodeResponse, sdk_cluster.DeletedGPUWorkerNode),
    (s.PhaseTransitionResponse, sdk_cluster.PhaseTransition),
    (s.NodePhaseTransitionResponse, sdk_cluster.ControlPlaneNodePhaseTransition),
    (s.VolumeRef, sdk_cluster.Volume),
    (s.AddOnResponse, sdk_cluster.AddOn),
    (s.AddOnConfig, sdk_cluster.AddOnConfig),
    (s.AddOnState, sdk_cluster.AddOnState),
    (s.Toggle, sdk_cluster.ClusterConfigIngress),
    (s.ClusterConfigResponse, sdk_cluster.ClusterConfig),
    (s.SlurmStartupScripts, sdk_cluster.ClusterConfigSlurmStartupScripts),
    (s.OidcConfigResponse, sdk_cluster.OidcConfig),
    (s.NodeLifecycleEventResponse, sdk_cluster.NodeLifecycleEvent),
    (s.ClusterListResponse, sdk.ClusterListResponse),
    (s.ClusterDeleteResponse, sdk.ClusterDeleteResponse),
    (s.RegionListResponse, sdk.ClusterListRegionsResponse),
    (s.RegionResponse, sdk_regions.Region),
    (s.DriverVersionResponse, sdk_regions.RegionDriverVersion),
    (s.ClusterStorageResponse, sdk_clusters.ClusterStorage),
    (s.StorageListResponse, sdk_clusters.StorageListResponse),
    (s.StorageDeleteResponse, sdk_clusters.StorageDeleteResponse),
    (s.RemediationResponse, sdk_clusters.Remediation),
    (s.RemediationListResponse, sdk_clusters.RemediationListResponse),
    (s.LinkedAlertResponse, sdk_remediation.LinkedAlert),
    (s.LinkedAlertAnnotationResponse, sdk_remediation.LinkedAlertAnnotation),
    (s.SlurmNodeUnavailableResponse, sdk_remediation.LinkedAlertAnnotationSlurmNodeUnavailable),
    (s.XidAnnotationResponse, sdk_remediation.LinkedAlertAnnotationXid),
    (s.XidEventResponse, sdk_remediation.LinkedAlertAnnotationXidEvent),
    (s.WhoamiV3Response, sdk.WhoamiProjectAPIKey),
    (s.WhoamiApiKey, sdk.WhoamiAPIKey),
    (s.WhoamiOrganization, sdk.WhoamiOrganization),
    (s.WhoamiProject, sdk.WhoamiProject),
]


def required_names(model: type[BaseModel]) -> set[str]:
    return {name for name, info in model.model_fields.items() if info.is_required()}


@pytest.mark.parametrize(("ours", "theirs"), RESPONSE_PAIRS, ids=lambda m: m.__name__)
def test_response_fields_match_the_sdk_name_for_name(ours: type[BaseModel], theirs: Any) -> None:
    assert set(ours.model_fields) - DELIBERATE_EXTRAS == set(theirs.model_fields)
    sdk_required = required_names(theirs) | (set(ours.model_fields) & DELIBERATE_EXTRAS)
    if ours is s.WhoamiV3Response:  # `type` has a default here but is always emitted
        sdk_required.discard("type")
    assert required_names(ours) == sdk_required


def typed_dict_keys(typed_dict: Any) -> tuple[set[str], set[str]]:
    """(required keys, all keys) of an SDK params TypedDict (it marks them `Required[...]`)."""
    hints = typing.get_type_hints(typed_dict, include_extras=True)
    required = {name for name, hint in hints.items() if typing.get_origin(hint) is typing.Required}
    return required, set(hints)


@pytest.mark.parametrize(
    "variant",
    [
        sdk_create.GPUClusterCreateRequestNvidiaVersion,
        sdk_create.GPUClusterCreateRequestLegacyNvidia,
    ],
)
def test_create_request_covers_both_sdk_variants(variant: Any) -> None:
    required, every = typed_dict_keys(variant)
    assert {"billing_type", "cluster_name", "gpu_type", "num_gpus", "region"} <= required
    assert every <= set(s.CreateClusterRequest.model_fields)
    assert required_names(s.CreateClusterRequest) <= required
    assert {"auto_scaled", "gpu_node_failover_enabled", "driver_version"} <= set(
        s.CreateClusterRequest.model_fields
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "path_params"),
    [
        (s.UpdateClusterRequest, sdk_update.ClusterUpdateParams, set()),
        (s.AddOnUpdate, sdk_update.AddOn, set()),
        (s.AddOnCreate, sdk_create.GPUClusterCreateRequestNvidiaVersionAddOn, set()),
        (s.ClusterConfigRequest, sdk_update.ClusterConfig, set()),
        (s.OidcConfigRequest, sdk_create.GPUClusterCreateRequestNvidiaVersionOidcConfig, set()),
        (s.SharedVolumeCreate, sdk_create.GPUClusterCreateRequestNvidiaVersionSharedVolume, set()),
        (
            s.AcceptanceTestsParams,
            sdk_create.GPUClusterCreateRequestNvidiaVersionAcceptanceTestsParams,
            set(),
        ),
        (s.CreateVolumeRequest, sdk_clusters.StorageCreateParams, set()),
        (s.UpdateVolumeRequest, sdk_clusters.StorageUpdateParams, set()),
        (s.CreateRemediationRequest, sdk_clusters.RemediationCreateParams, {"cluster_id"}),
        (
            s.ApproveRemediationRequest,
            sdk_clusters.RemediationApproveParams,
            {"cluster_id", "instance_id"},
        ),
        (
            s.RejectRemediationRequest,
            sdk_clusters.RemediationRejectParams,
            {"cluster_id", "instance_id"},
        ),
    ],
    ids=lambda v: getattr(v, "__name__", "path"),
)
def test_request_fields_match_the_sdk_params(
    ours: type[BaseModel], theirs: Any, path_params: set[str]
) -> None:
    required, every = typed_dict_keys(theirs)
    assert set(ours.model_fields) == every - path_params
    assert required_names(ours) == required - path_params


def test_every_model_produces_a_json_schema_for_openapi() -> None:
    for name in s.__all__:
        model = getattr(s, name)
        if isinstance(model, type) and issubclass(model, BaseModel):
            json.dumps(model.model_json_schema(mode="validation"))
            json.dumps(model.model_json_schema(mode="serialization"))


# --- through the real SDK client ---------------------------------------------------------


def sdk_client(handler: Any) -> Together:
    transport = httpx.MockTransport(handler)
    return Together(
        api_key="k",
        base_url="http://clusterplane.test",
        http_client=httpx.Client(transport=transport),
        max_retries=0,
    )


def test_bodies_the_sdk_sends_validate_and_its_client_reads_our_responses() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=wire(full_cluster()))

    client = sdk_client(handler)
    created = client.clusters.create(
        billing_type="SCHEDULED_CAPACITY",
        cluster_name="train-1",
        gpu_type="H100_SXM",
        num_gpus=16,
        region="us-central-8",
        nvidia_version_id="nv-1",
        reservation_start_time=datetime(2026, 2, 1),
        reservation_end_time=datetime(2026, 2, 8, tzinfo=UTC),
        cluster_config={"load_balancer": "NONE"},
        add_ons=[
            {
                "add_on_type": "headlamp",
                "name": "headlamp",
                "config": {"headlamp": {"enabled": True}},
            }
        ],
    )
    client.clusters.create(
        billing_type="RESERVED",
        cluster_name="train-2",
        gpu_type="B200_SXM",
        num_gpus=8,
        region="us-central-8",
        cuda_version="12.8",
        nvidia_driver_version="570",
        duration_days=3,
        cluster_type="SLURM",
        slurm_shm_size_gib=64,
    )
    client.clusters.update("c-1", num_gpus=24, reservation_end_time=datetime(2026, 3, 1))
    assert created.cluster_id == "c-1" and created.cluster_config is not None

    first = s.CreateClusterRequest.model_validate(seen[0])
    assert first.reservation_start_time == datetime(2026, 2, 1, tzinfo=UTC)
    second = s.CreateClusterRequest.model_validate(seen[1])
    assert second.cluster_type is ClusterType.SLURM
    update = s.UpdateClusterRequest.model_validate(seen[2])
    assert update.model_fields_set == {"num_gpus", "reservation_end_time"}


def test_the_sdk_client_reads_storage_remediation_region_and_whoami_responses() -> None:
    volume = s.ClusterStorageResponse(
        volume_id="vol-1", volume_name="data", size_tib=1, status=VolumeStatus.AVAILABLE
    )
    routes: dict[tuple[str, str], BaseModel] = {
        ("POST", "/v1/compute/clusters/storage/volumes"): volume,
        ("PUT", "/v1/compute/clusters/storage/volumes"): volume,
        ("POST", "/v1/compute/clusters/c-1/instances/inst-1/remediations"): remediation(),
        (
            "POST",
            "/v1/compute/clusters/c-1/instances/inst-1/remediations/rem-1/approve",
        ): remediation(),
        ("GET", "/v1/compute/regions"): s.RegionListResponse(regions=[]),
        ("GET", "/v3/whoami"): s.WhoamiV3Response(
            api_key=s.WhoamiApiKey(id="key_1"),
            organization=s.WhoamiOrganization(id="org_1", name="Org"),
            project=s.WhoamiProject(id="proj_1", name="Default", slug="default"),
        ),
    }
    bodies: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.content:
            bodies[f"{request.method} {request.url.path}"] = json.loads(request.content)
        return httpx.Response(200, json=wire(routes[(request.method, request.url.path)]))

    client = sdk_client(handler)
    assert (
        client.clusters.storage.create(
            region="us-central-8", size_tib=1, volume_name="data"
        ).volume_id
        == "vol-1"
    )
    client.clusters.storage.update(volume_id="vol-1")
    created = client.clusters.remediations.create(
        "inst-1", cluster_id="c-1", mode="REMEDIATION_MODE_VM_ONLY"
    )
    assert created.state == "PENDING"
    client.clusters.remediations.approve(
        "rem-1", cluster_id="c-1", instance_id="inst-1", comment="ok"
    )
    assert client.clusters.list_regions().regions == []
    assert client.whoami().type == "project_api_key"

    s.CreateVolumeRequest.model_validate(bodies["POST /v1/compute/clusters/storage/volumes"])
    s.UpdateVolumeRequest.model_validate(bodies["PUT /v1/compute/clusters/storage/volumes"])
    s.CreateRemediationRequest.model_validate(
        bodies["POST /v1/compute/clusters/c-1/instances/inst-1/remediations"]
    )
    s.ApproveRemediationRequest.model_validate(
        bodies["POST /v1/compute/clusters/c-1/instances/inst-1/remediations/rem-1/approve"]
    )


# --- helpers for SDK checks --------------------------------------------------------------


def assert_sdk_required_fields_present(sdk_model: Any, body: Any) -> None:
    """Every field the SDK declares required is in `body` and not null, recursively."""
    for name, info in sdk_model.model_fields.items():
        if info.is_required():
            assert body.get(name) is not None, f"{sdk_model.__name__}.{name} missing"
        value = body.get(name)
        nested = _model_of(info.annotation)
        if nested is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            assert_sdk_required_fields_present(nested, item)


def _model_of(annotation: Any) -> Any:
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        for inner in [candidate, *typing.get_args(candidate)]:
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


# Names Together's OpenAPI file requires that SDK 3.1.1 lacks (it keeps them as extras).
DELIBERATE_EXTRAS = {"node_name"}


def assert_no_unknown_fields(parsed: Any) -> None:
    """Nothing we emitted landed in the SDK model's `extra` (i.e. every name is known),
    except the `DELIBERATE_EXTRAS`."""
    if isinstance(parsed, list):
        for item in parsed:
            assert_no_unknown_fields(item)
        return
    if not isinstance(parsed, BaseModel):
        return
    assert not set(parsed.model_extra or {}) - DELIBERATE_EXTRAS, (
        f"{type(parsed).__name__} got unknown fields {parsed.model_extra}"
    )
    for name in type(parsed).model_fields:
        assert_no_unknown_fields(getattr(parsed, name))
