"""Every enumeration a client can see, with values exactly as on the wire (spec §4)."""

from __future__ import annotations

from enum import StrEnum


class ClusterStatus(StrEnum):
    WAITING_FOR_CONTROL_PLANE_NODES = "WaitingForControlPlaneNodes"
    WAITING_FOR_DATA_PLANE_NODES = "WaitingForDataPlaneNodes"
    WAITING_FOR_SUBNET = "WaitingForSubnet"
    WAITING_FOR_SHARED_VOLUME = "WaitingForSharedVolume"
    INSTALLING_DRIVERS = "InstallingDrivers"
    RUNNING_ACCEPTANCE_TESTS = "RunningAcceptanceTests"
    PAUSED = "Paused"
    ON_DEMAND_COMPUTE_PAUSED = "OnDemandComputePaused"
    READY = "Ready"
    DEGRADED = "Degraded"
    DELETING = "Deleting"
    SCHEDULED = "Scheduled"  # CLI-known, outside the SDK enum (spec §4.1)


class ClusterPhase(StrEnum):
    QUEUED = "CLUSTER_PHASE_QUEUED"
    SCHEDULED = "CLUSTER_PHASE_SCHEDULED"
    WAITING_FOR_CONTROL_PLANE_NODES = "CLUSTER_PHASE_WAITING_FOR_CONTROL_PLANE_NODES"
    WAITING_FOR_DATA_PLANE_NODES = "CLUSTER_PHASE_WAITING_FOR_DATA_PLANE_NODES"
    WAITING_FOR_SUBNET = "CLUSTER_PHASE_WAITING_FOR_SUBNET"
    WAITING_FOR_SHARED_VOLUME = "CLUSTER_PHASE_WAITING_FOR_SHARED_VOLUME"
    WAITING_FOR_AUTO_SCALER = "CLUSTER_PHASE_WAITING_FOR_AUTO_SCALER"
    INSTALLING_DRIVERS = "CLUSTER_PHASE_INSTALLING_DRIVERS"
    RUNNING_ACCEPTANCE_TESTS = "CLUSTER_PHASE_RUNNING_ACCEPTANCE_TESTS"
    ACCEPTANCE_TESTS_FAILED = "CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED"
    RUNNING_NCCL_TESTS = "CLUSTER_PHASE_RUNNING_NCCL_TESTS"
    NCCL_TESTS_FAILED = "CLUSTER_PHASE_NCCL_TESTS_FAILED"
    READY = "CLUSTER_PHASE_READY"
    PAUSED = "CLUSTER_PHASE_PAUSED"
    ON_DEMAND_COMPUTE_PAUSED = "CLUSTER_PHASE_ON_DEMAND_COMPUTE_PAUSED"
    DEGRADED = "CLUSTER_PHASE_DEGRADED"
    DELETING = "CLUSTER_PHASE_DELETING"


class NodePhase(StrEnum):
    PENDING = "NODE_PHASE_PENDING"
    SCHEDULING = "NODE_PHASE_SCHEDULING"
    BOOTING = "NODE_PHASE_BOOTING"
    BOOTSTRAPPING = "NODE_PHASE_BOOTSTRAPPING"
    RUNNING = "NODE_PHASE_RUNNING"
    SUCCEEDED = "NODE_PHASE_SUCCEEDED"
    FAILED = "NODE_PHASE_FAILED"
    PAUSED = "NODE_PHASE_PAUSED"


class GpuType(StrEnum):
    H100_SXM = "H100_SXM"
    H200_SXM = "H200_SXM"
    RTX_6000_PCI = "RTX_6000_PCI"
    L40_PCIE = "L40_PCIE"
    B200_SXM = "B200_SXM"
    H100_SXM_INF = "H100_SXM_INF"
    B300_SXM = "B300_SXM"
    GB200_SXM = "GB200_SXM"


class BillingType(StrEnum):
    RESERVED = "RESERVED"
    ON_DEMAND = "ON_DEMAND"
    SCHEDULED_CAPACITY = "SCHEDULED_CAPACITY"


class ClusterType(StrEnum):
    KUBERNETES = "KUBERNETES"
    SLURM = "SLURM"


class LoadBalancer(StrEnum):
    NONE = "NONE"
    TRAEFIK = "TRAEFIK"
    NGINX = "NGINX"
    ISTIO = "ISTIO"


class RemediationState(StrEnum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    AUTO_RESOLVED = "AUTO_RESOLVED"
    QUARANTINING = "QUARANTINING"
    QUARANTINED = "QUARANTINED"


class RemediationMode(StrEnum):
    VM_ONLY = "REMEDIATION_MODE_VM_ONLY"
    HOST_AWARE = "REMEDIATION_MODE_HOST_AWARE"
    EVICT_WITHOUT_REPLACEMENT = "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"
    REBOOT_VM = "REMEDIATION_MODE_REBOOT_VM"
    HOST_POWER_CYCLE = "REMEDIATION_MODE_HOST_POWER_CYCLE"


class RemediationTrigger(StrEnum):
    MANUAL = "REMEDIATION_TRIGGER_MANUAL"
    AUTOMATED = "REMEDIATION_TRIGGER_AUTOMATED"


class VolumeStatus(StrEnum):
    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    BOUND = "bound"
    PROVISIONING = "provisioning"
    DELETING = "deleting"
    FAILED = "failed"
    ACCESS_REVOKED = "access_revoked"
    UNKNOWN = "unknown"


class AddOnType(StrEnum):
    DASHBOARD = "dashboard"
    INGRESS = "ingress"
    HEADLAMP = "headlamp"
    SLURM_WEB = "slurm_web"


class DcgmDiagLevel(StrEnum):
    SHORT = "DCGM_DIAG_LEVEL_SHORT"
    MEDIUM = "DCGM_DIAG_LEVEL_MEDIUM"
    LONG = "DCGM_DIAG_LEVEL_LONG"
    EXTENDED = "DCGM_DIAG_LEVEL_EXTENDED"


class NodeLifecycleReason(StrEnum):
    SCALED_UP = "TogetherScaledUp"
    SCALED_DOWN = "TogetherScaledDown"
    PREEMPTED = "TogetherPreempted"
    PREEMPTION_NOTIFIED = "TogetherPreemptionNotified"
    NODE_ADDED = "TogetherNodeAdded"


class HostState(StrEnum):
    """Where a fleet host stands; only `available` hosts are ever handed out."""

    AVAILABLE = "available"
    ALLOCATED = "allocated"
    QUARANTINED = "quarantined"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"


class NodeRole(StrEnum):
    CONTROL_PLANE = "control_plane"
    GPU_WORKER = "gpu_worker"
