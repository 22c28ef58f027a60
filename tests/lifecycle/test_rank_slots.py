"""A rank's region lies at its rank slot's base, never at its CUDA device number's: two ranks
on one GPU get disjoint regions, and a rank keeps its addresses on another GPU. Topology facts
come from files, without a GPU call, and GPU order is not one of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.errors import ConfigError
from kiln.lifecycle import topology
from kiln.region import DEFAULT_BASE, DEFAULT_SIZE, RegionConfig, rank_slot
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import close_current_driver, kiln_environ


def test_two_ranks_on_one_gpu_get_disjoint_regions() -> None:
    a = RegionConfig.from_env(0, {}, slot=0)
    b = RegionConfig.from_env(0, {}, slot=1)
    assert a.base + a.size <= b.base


def test_the_device_number_does_not_move_a_ranks_region() -> None:
    assert RegionConfig.from_env(3, {}, slot=1).base == DEFAULT_BASE + DEFAULT_SIZE
    assert RegionConfig.from_env(0, {}, slot=1).base == DEFAULT_BASE + DEFAULT_SIZE


def test_a_slot_whose_region_ends_above_the_address_space_is_refused() -> None:
    with pytest.raises(ConfigError, match="slot 400 puts the region"):
        RegionConfig.from_env(0, {}, slot=400)


def test_the_slot_is_the_rank_unless_set() -> None:
    assert rank_slot(3, {}) == 3
    assert rank_slot(3, {"KILN_REGION_SLOT": "0"}) == 0
    with pytest.raises(ConfigError, match="KILN_REGION_SLOT"):
        rank_slot(0, {"KILN_REGION_SLOT": "-1"})


@pytest.mark.parametrize(
    ("rank", "environ", "slot"), [(1, {}, 1), (1, {"KILN_REGION_SLOT": "5"}, 5)]
)
def test_the_driver_binds_the_region_at_the_ranks_slot(
    tmp_path: Path, toy_adapter, rank: int, environ: dict, slot: int
) -> None:
    runtime = FakeRuntime()
    try:
        ToyEngine(
            world_size=2,
            rank=rank,
            environ=kiln_environ(tmp_path, "save", **environ),
            runtime=runtime,
        ).start()
    finally:
        close_current_driver()
    assert (runtime.slot, runtime.bound_slot) == (slot, slot)


def test_the_native_runtime_fingerprints_the_slots_base(monkeypatch) -> None:
    from kiln import fingerprint
    from kiln.lifecycle.native_runtime import NativeRuntime

    monkeypatch.setattr(
        fingerprint, "environment_fingerprint", lambda config: {"region_base": config.base}
    )
    assert NativeRuntime().fingerprint(0, slot=2)["region_base"] == DEFAULT_BASE + 2 * DEFAULT_SIZE


def _node(tmp_path: Path, models: list[str], nvswitches: int = 0) -> topology.Sources:
    gpus, dev, rdma = tmp_path / "gpus", tmp_path / "dev", tmp_path / "rdma"
    for i, model in enumerate(models):
        (gpus / f"0000:{i:02x}:00.0").mkdir(parents=True)
        (gpus / f"0000:{i:02x}:00.0" / "information").write_text(
            f"Model: \t\t {model}\nIRQ:   \t\t 42\nBus Location: \t 0000:{i:02x}:00.0\n"
        )
    dev.mkdir()
    for i in range(nvswitches):
        (dev / f"nvidia-nvswitch{i}").touch()
    (dev / "nvidia-nvswitchctl").touch()  # the control node is not a switch
    return topology.Sources(gpus, dev, rdma)


def test_topology_is_read_from_the_drivers_files(tmp_path: Path) -> None:
    sources = _node(tmp_path, ["NVIDIA H100 80GB HBM3", "NVIDIA H200"], nvswitches=4)
    facts = topology.read_topology({"NCCL_P2P_DISABLE": "1", "NCCL_DEBUG": "INFO"}, sources)
    assert facts == {
        "gpu_models": "NVIDIA H100 80GB HBM3;NVIDIA H200",
        "devices_per_node": 2,
        "nvswitches": 4,
        "rdma_devices": 0,
        "nccl_transport": "NCCL_P2P_DISABLE=1",
    }


def test_gpu_order_is_not_topology(tmp_path: Path) -> None:
    sources = _node(tmp_path, ["NVIDIA H100 80GB HBM3"] * 2)
    one = topology.read_topology({"CUDA_VISIBLE_DEVICES": "0,1"}, sources)
    assert one == topology.read_topology({"CUDA_VISIBLE_DEVICES": "1,0"}, sources)
    assert topology.read_topology({"CUDA_VISIBLE_DEVICES": "1"}, sources)["devices_per_node"] == 1


def test_a_node_without_the_driver_has_no_gpus(tmp_path: Path) -> None:
    facts = topology.read_topology({}, topology.Sources(*(tmp_path / n for n in "abc")))
    assert (facts["gpu_models"], facts["devices_per_node"], facts["nvswitches"]) == ("", 0, 0)
