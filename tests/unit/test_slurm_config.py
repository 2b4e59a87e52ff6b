"""Slurm configuration rendering: the key lines, and user input that cannot break out."""

from __future__ import annotations

import dataclasses

import pytest

from clusterplane.errors import InvalidRequest
from clusterplane.providers.slurm import (
    SlurmClusterSpec,
    SlurmNode,
    SlurmPartition,
    SlurmStartupScripts,
    config_generation,
    render_files,
    render_gres_conf,
    render_slurm_conf,
    worker_node_conf,
)

GPUS = tuple(f"/dev/nvidia{i}" for i in range(8))


def make_spec(**changes: object) -> SlurmClusterSpec:
    spec = SlurmClusterSpec(
        name="lab",
        controller_name="lab-ctl",
        controller_address="10.0.0.1",
        shm_size_gib=8,
        nodes=(SlurmNode("gpu-1", "10.0.0.11", GPUS), SlurmNode("gpu-2", "10.0.0.12", GPUS[:4])),
        startup_scripts=SlurmStartupScripts(worker_prolog="echo hi > /tmp/prolog\n"),
        state_dir="/var/lib/cp/slurm/lab",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def conf_lines(spec: SlurmClusterSpec) -> list[str]:
    return render_slurm_conf(spec).splitlines()


def test_slurm_conf_names_the_controller_and_runs_configless_with_dynamic_nodes() -> None:
    lines = conf_lines(make_spec(controller_port=16817))
    assert "ClusterName=lab" in lines
    assert "SlurmctldHost=lab-ctl(10.0.0.1)" in lines
    assert "SlurmctldPort=16817" in lines
    assert "SlurmctldParameters=enable_configless" in lines
    assert "MaxNodeCount=1024" in lines
    assert "TreeWidth=65533" in lines
    assert "StateSaveLocation=/var/lib/cp/slurm/lab/state" in lines
    assert "PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP" in lines
    assert not [line for line in lines if line.startswith("NodeName=")]


def test_only_the_scripts_given_become_prolog_and_epilog_programs() -> None:
    lines = conf_lines(make_spec())
    assert "Prolog=/var/lib/cp/slurm/lab/etc/prolog.sh" in lines
    assert not [line for line in lines if line.startswith(("Epilog", "PrologSlurmctld"))]


def test_files_per_role_carry_the_scripts_with_an_interpreter_line() -> None:
    scripts = SlurmStartupScripts(
        worker_prolog="echo p\n",
        controller_epilog="#!/bin/bash\necho e\n",
        login_init_script="echo login\n",
        nodeset_init_script="echo nodeset\n",
    )
    files = render_files(make_spec(startup_scripts=scripts))
    assert sorted(files.controller) == [
        "etc/epilog-slurmctld.sh",
        "etc/gres.conf",
        "etc/slurm.conf",
    ]
    assert files.controller["etc/epilog-slurmctld.sh"] == "#!/bin/bash\necho e\n"
    assert files.worker == {
        "etc/prolog.sh": "#!/bin/sh\necho p\n",
        "etc/nodeset-init.sh": "#!/bin/sh\necho nodeset\n",
    }
    assert files.login["etc/login-init.sh"] == "#!/bin/sh\necho login\n"
    assert files.login["etc/slurm.conf"] == files.controller["etc/slurm.conf"]


def test_gres_conf_names_no_node_when_every_node_has_the_same_devices() -> None:
    nodes = (SlurmNode("gpu-1", "10.0.0.11", GPUS), SlurmNode("gpu-2", "10.0.0.12", GPUS))
    lines = render_gres_conf(nodes).splitlines()
    assert lines[1:] == ["AutoDetect=off", *(f"Name=gpu File=/dev/nvidia{i}" for i in range(8))]
    assert render_gres_conf(nodes) == render_gres_conf((*nodes, SlurmNode("gpu-3", "x", GPUS)))


def test_gres_conf_lists_every_device_of_every_node_when_nodes_differ() -> None:
    text = render_gres_conf(make_spec().nodes)
    lines = text.splitlines()
    assert "AutoDetect=off" in lines
    assert "NodeName=gpu-1 Name=gpu File=/dev/nvidia7" in lines
    assert "NodeName=gpu-2 Name=gpu File=/dev/nvidia3" in lines
    assert "NodeName=gpu-2 Name=gpu File=/dev/nvidia4" not in lines
    assert len([line for line in lines if line.startswith("NodeName=")]) == 12


def test_a_worker_registers_its_gpu_count_and_resources() -> None:
    node = SlurmNode("gpu-1", "10.0.0.11", GPUS, cpus=32, memory_mib=64000)
    assert worker_node_conf(node) == "CPUs=32 RealMemory=64000 Gres=gpu:8"


def test_extra_slurm_conf_is_appended_when_it_sets_only_free_parameters() -> None:
    extra = "# tuning\nSchedulerParameters=bf_continue\nDebugFlags=NO_CONF_HASH\n"
    lines = conf_lines(make_spec(startup_scripts=SlurmStartupScripts(extra_slurm_conf=extra)))
    assert "SchedulerParameters=bf_continue" in lines
    assert lines.index("DebugFlags=NO_CONF_HASH") < lines.index(
        "PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
    )


@pytest.mark.parametrize(
    "extra",
    [
        "SlurmctldHost=evil(1.2.3.4)",
        "authtype=auth/none",
        "Include /etc/passwd",
        "PrologSlurmctld=/tmp/x",
        "DebugFlags=Gres PartitionName=mine Nodes=ALL",
        "SchedulerParameters=a \\\nSlurmUser=root",
    ],
)
def test_extra_slurm_conf_cannot_take_over_what_clusterplane_sets(extra: str) -> None:
    spec = make_spec(startup_scripts=SlurmStartupScripts(extra_slurm_conf=extra))
    with pytest.raises(InvalidRequest) as caught:
        render_files(spec)
    assert caught.value.param == "cluster_config.slurm_startup_scripts.extra_slurm_conf"


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"name": "lab\nSlurmUser=root"}, "name"),
        ({"controller_name": "ctl node"}, "controller_name"),
        ({"controller_address": "10.0.0.1\nAuthType=auth/none"}, "controller_address"),
        ({"nodes": (SlurmNode("gpu-1\nNodeName=x", "10.0.0.11"),)}, "nodes.name"),
        ({"nodes": (SlurmNode("gpu-1", "10.0.0.11", ("/dev/x Count=99",)),)}, "nodes.gpu_devices"),
        (
            {"nodes": (SlurmNode("gpu-1", "10.0.0.11", ("/dev/../etc/shadow",)),)},
            "nodes.gpu_devices",
        ),
        ({"partitions": (SlurmPartition("gpu Default=YES"),)}, "partitions.name"),
        ({"state_dir": "/var/lib/x\nSlurmUser=root"}, "state_dir"),
        ({"shm_size_gib": 0}, "slurm_shm_size_gib"),
        ({"controller_port": 70000}, "controller_port"),
    ],
)
def test_names_addresses_and_paths_must_be_single_tokens(
    changes: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        render_files(make_spec(**changes))
    assert caught.value.param == param


def test_scripts_are_file_bodies_and_never_reach_slurm_conf() -> None:
    hostile = "echo x\nSlurmUser=root\nAuthType=auth/none\n"
    spec = make_spec(startup_scripts=SlurmStartupScripts(worker_prolog=hostile))
    files = render_files(spec)
    assert "AuthType=auth/none" not in files.controller["etc/slurm.conf"]
    assert files.worker["etc/prolog.sh"] == "#!/bin/sh\n" + hostile


@pytest.mark.parametrize("body", ["echo \x00", "echo a\r\nexit 0", "#" * (64 * 1024 + 1)])
def test_scripts_with_nul_cr_or_over_the_size_limit_are_refused(body: str) -> None:
    spec = make_spec(startup_scripts=SlurmStartupScripts(worker_epilog=body))
    with pytest.raises(InvalidRequest) as caught:
        render_files(spec)
    assert caught.value.param == "cluster_config.slurm_startup_scripts.worker_epilog"


def test_a_partition_may_only_name_known_nodes() -> None:
    spec = make_spec(partitions=(SlurmPartition("gpu", nodes=("gpu-9",), default=True),))
    with pytest.raises(InvalidRequest, match="unknown node gpu-9"):
        render_files(spec)


def test_the_config_generation_changes_with_what_a_configless_worker_fetches() -> None:
    spec = make_spec()
    same = config_generation(render_files(spec))
    assert config_generation(render_files(spec)) == same
    scripts = SlurmStartupScripts(worker_prolog="echo changed\n")
    assert config_generation(render_files(make_spec(startup_scripts=scripts))) == same
    more = (*spec.partitions, SlurmPartition("debug"))
    assert config_generation(render_files(make_spec(partitions=more))) != same
