"""verify_archive without a GPU: a good archive passes; each kind of damage is reported as a
specific problem naming its section, graph, node, kernel or address, never raised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiln.inspection import verify_archive
from kiln.inspection.problems import MAX_LISTED

from tests.inspection.archives import (
    BASE,
    GAP,
    REGION_SIZE,
    MiB,
    at,
    blob,
    flip,
    good_parts,
    kernel,
    memset,
    section_span,
    set_pointer,
    write,
)


def problems_of(path: Path) -> list[str]:
    result = verify_archive(path)
    json.dumps(result)  # always serialisable
    assert result["ok"] is False
    assert result["problems"], "a failed verification lists its problems"
    return result["problems"]


def only(problems: list[str], *fragments: str) -> str:
    """The single problem; check that it holds every fragment."""
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], (fragment, problems[0])
    return problems[0]


# --- a good archive ------------------------------------------------------------------------


def test_a_good_archive_verifies(archive: Path) -> None:
    result = verify_archive(archive)
    assert result["ok"] is True and result["problems"] == []
    assert result["checked"] == {
        "sections": 6,
        "binaries": 2,
        "graphs": 2,
        "kernel_nodes": 5,
        # bs=1: 3 kernel pointers, a memset, a memcpy's source and destination, 2 tensors;
        # bs=2: 4 kernel pointers, 2 tensors.
        "ranges_audited": 14,
    }
    assert "gpu" not in result and "unreferenced_sections" not in result
    assert result["path"] == str(archive)


def test_gpu_false_is_the_default_and_positional(archive: Path) -> None:
    assert verify_archive(archive, False)["ok"] is True


def test_sections_nothing_refers_to_are_listed_but_not_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "graphs.kiln", replace={"notes": b"hello"})
    result = verify_archive(path)
    assert result["ok"] is True and result["unreferenced_sections"] == ["notes"]


# --- the container -------------------------------------------------------------------------


def test_a_flipped_byte_in_a_graph_blob_names_the_section(archive: Path) -> None:
    offset, length = section_span(archive, "g0")
    flip(archive, offset + length // 2)
    only(problems_of(archive), "section 'g0'", "checksum mismatch", "not checked further")


def test_a_flipped_byte_in_a_binary_is_not_reported_twice(archive: Path) -> None:
    offset, _ = section_span(archive, "b1")
    flip(archive, offset)
    only(problems_of(archive), "section 'b1'", "checksum mismatch")


def test_a_flipped_byte_in_the_manifest(archive: Path) -> None:
    offset, _ = section_span(archive, "manifest")
    flip(archive, offset + 3)
    only(problems_of(archive), "section 'manifest'", "checksum mismatch")


def test_a_flipped_byte_in_the_header(archive: Path) -> None:
    flip(archive, 40)  # inside the section table
    only(problems_of(archive), "header checksum mismatch")


def test_a_truncated_archive(archive: Path) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) - 100])
    only(problems_of(archive), "truncated", str(archive))


def test_an_archive_cut_inside_its_header_or_empty(archive: Path) -> None:
    data = archive.read_bytes()
    for length in (0, 7, 31, 200):
        archive.write_bytes(data[:length])
        only(problems_of(archive), str(archive))


def test_a_path_that_is_not_an_archive(tmp_path: Path) -> None:
    only(problems_of(tmp_path / "nowhere.kiln"), "cannot open archive")
    only(problems_of(tmp_path), "not a regular file")
    (tmp_path / "text.kiln").write_text("hello, this is not an archive at all" * 4)
    only(problems_of(tmp_path / "text.kiln"), "text.kiln")


# --- missing sections and the manifest -----------------------------------------------------


def test_a_missing_binary_section(tmp_path: Path) -> None:
    path = write(tmp_path / "graphs.kiln", drop=["b1"])
    only(problems_of(path), "binary entry 'b1'", "section is missing")


def test_a_missing_graph_section(tmp_path: Path) -> None:
    path = write(tmp_path / "graphs.kiln", drop=["g1"])
    only(problems_of(path), "graph 'decode/bs=2'", "missing section 'g1'")


def test_a_missing_manifest(tmp_path: Path) -> None:
    path = write(tmp_path / "graphs.kiln", drop=["manifest"])
    only(problems_of(path), "section 'manifest' is missing")


def test_a_missing_fingerprint_still_checks_the_rest(tmp_path: Path) -> None:
    parts = good_parts()
    parts.graphs[0].desc["nodes"][0]["kernel"]["binary"] = 9
    path = write(tmp_path / "graphs.kiln", parts, drop=["fingerprint"])
    problems = problems_of(path)
    assert problems[0] == "section 'fingerprint' is missing"
    assert "binary slot 9" in problems[1] and len(problems) == 2


def test_a_manifest_that_is_not_json(tmp_path: Path) -> None:
    path = write(tmp_path / "graphs.kiln", replace={"manifest": b'{"device": 0,'})
    only(problems_of(path), "section 'manifest'", "invalid JSON")


def test_a_manifest_with_a_bad_field(tmp_path: Path) -> None:
    def patch(m: dict[str, Any]) -> None:
        m["window"] = [3, 9]

    path = write(tmp_path / "graphs.kiln", patch=patch)
    only(problems_of(path), "manifest", "capture window")


# --- binaries --------------------------------------------------------------------------------


def test_a_binary_whose_sha256_differs_from_the_manifest(tmp_path: Path) -> None:
    def patch(m: dict[str, Any]) -> None:
        m["binaries"][0]["sha256"] = "ab" * 32

    path = write(tmp_path / "graphs.kiln", patch=patch)
    only(problems_of(path), "binary slot 0 (section 'b0')", "the manifest says " + "ab" * 32)


def test_a_binary_whose_size_differs_from_the_manifest(tmp_path: Path) -> None:
    def patch(m: dict[str, Any]) -> None:
        m["binaries"][1]["size"] = 4096

    path = write(tmp_path / "graphs.kiln", patch=patch)
    only(problems_of(path), "binary slot 1 (section 'b1')", "holds 80 bytes", "says 4096")


def test_a_binary_that_is_not_a_kernel_image(tmp_path: Path) -> None:
    parts = good_parts()
    parts.binaries[0] = (b"\x01\x02garbage that no loader accepts", "ptx")
    path = write(tmp_path / "graphs.kiln", parts)
    only(problems_of(path), "binary slot 0 (section 'b0') is not a valid kernel image")


def test_a_binary_of_another_kind_than_the_manifest_says(tmp_path: Path) -> None:
    parts = good_parts()
    parts.binaries[1] = (parts.binaries[1][0], "cubin")
    path = write(tmp_path / "graphs.kiln", parts)
    only(problems_of(path), "binary slot 1", "is a ptx, the manifest says cubin")


def test_a_binary_with_bytes_after_its_image(tmp_path: Path) -> None:
    parts = good_parts()
    parts.binaries[1] = (parts.binaries[1][0] + b"junk", "ptx")
    path = write(tmp_path / "graphs.kiln", parts)
    only(problems_of(path), "binary slot 1", "header claims 80 bytes, the section holds 84")


# --- graphs ----------------------------------------------------------------------------------


def test_a_graph_blob_that_does_not_decode(tmp_path: Path) -> None:
    path = write(tmp_path / "graphs.kiln", replace={"g1": b"KGR1" + b"\xff" * 40})
    only(problems_of(path), "graph 'decode/bs=2' (section 'g1') does not decode")


def test_a_blob_holding_another_graph_than_the_manifest_says(tmp_path: Path) -> None:
    parts = good_parts()
    path = write(tmp_path / "graphs.kiln", parts, replace={"g0": blob(parts.graphs[1].desc)})
    problems = problems_of(path)
    assert any(
        "graph 'decode/bs=1': the blob has 3 nodes, the manifest says 4" in p for p in problems
    )
    assert any("the blob has 3 kernel nodes, the manifest says 2" in p for p in problems)


def test_manifest_counts_that_disagree_with_the_blob(tmp_path: Path) -> None:
    def patch(m: dict[str, Any]) -> None:
        m["graphs"][1]["kernels"] = 2

    path = write(tmp_path / "graphs.kiln", patch=patch)
    only(problems_of(path), "graph 'decode/bs=2'", "3 kernel nodes, the manifest says 2")


def test_a_kernel_whose_binary_slot_does_not_exist(tmp_path: Path) -> None:
    parts = good_parts()
    parts.graphs[1].desc["nodes"][2]["kernel"]["binary"] = 7
    path = write(tmp_path / "graphs.kiln", parts)
    only(
        problems_of(path),
        "graph 'decode/bs=2' node 2 (kernel 'mul') uses binary slot 7",
        "the archive has 2 binaries",
    )


# --- the pointer audit -------------------------------------------------------------------


def test_a_kernel_pointer_into_a_gap_between_allocations(tmp_path: Path) -> None:
    parts = good_parts()
    set_pointer(parts.graphs[0].desc["nodes"][0], 1, GAP + 16)
    path = write(tmp_path / "graphs.kiln", parts)
    only(
        problems_of(path),
        "graph 'decode/bs=1' node 0 (kernel 'add') argument byte 8",
        f"address 0x{GAP + 16:x}",
        f"region offset 0x{5 * MiB + 16:x}",
        "does not lie inside one allocation of the recorded trajectory",
    )


def test_a_kernel_pointer_outside_the_region(tmp_path: Path) -> None:
    parts = good_parts()
    outside = BASE + REGION_SIZE + 64
    set_pointer(parts.graphs[1].desc["nodes"][1], 0, outside)
    path = write(tmp_path / "graphs.kiln", parts)
    only(
        problems_of(path),
        "graph 'decode/bs=2' node 1 (kernel 'add') argument byte 0",
        f"address 0x{outside:x}",
        "outside the region",
    )


def test_a_pointer_into_an_allocation_the_trajectory_lacks(tmp_path: Path) -> None:
    parts = good_parts()
    parts.trajectory = parts.trajectory[:3]  # allocation #3 dropped (still a valid window)
    parts.window = (2, 3)
    path = write(tmp_path / "graphs.kiln", parts)
    problems = problems_of(path)
    # Both graphs point into #3 (kernels, memcpy destination, the outputs).
    assert all("does not lie inside one allocation" in p for p in problems)
    assert any("graph 'decode/bs=1' node 2 (kernel 'mul') argument byte 0" in p for p in problems)
    assert any("graph 'decode/bs=1' node 3 (memcpy destination)" in p for p in problems)
    assert any("graph 'decode/bs=2' output 0 (bfloat16[1, 64])" in p for p in problems)


def test_a_memset_running_past_the_end_of_its_allocation(tmp_path: Path) -> None:
    parts = good_parts()
    parts.graphs[0].desc["nodes"][1] = memset(at(2, 1 * MiB - 64), 32)  # 128 bytes, 64 too many
    path = write(tmp_path / "graphs.kiln", parts)
    only(
        problems_of(path),
        "graph 'decode/bs=1' node 1 (memset)",
        f"range [0x{at(2, 1 * MiB - 64):x}, +128 bytes)",
    )


def test_a_range_spanning_two_allocations_is_not_inside_one(tmp_path: Path) -> None:
    parts = good_parts()
    parts.graphs[1].desc["nodes"].append(memset(at(0, 2 * MiB - 4), 2))  # into #1
    parts.graphs[1].desc["edges"].append((2, 3, 0, 0, 0))
    path = write(tmp_path / "graphs.kiln", parts)
    only(problems_of(path), "graph 'decode/bs=2' node 3 (memset)", "+8 bytes")


def test_an_input_tensor_outside_the_trajectory(tmp_path: Path) -> None:
    def patch(m: dict[str, Any]) -> None:
        m["graphs"][0]["inputs"][0]["address"] = at(2, 1 * MiB - 100)  # 256 bytes: 156 past

    path = write(tmp_path / "graphs.kiln", patch=patch)
    only(
        problems_of(path),
        "graph 'decode/bs=1' input 0 (float32[1, 64])",
        f"range [0x{at(2, 1 * MiB - 100):x}, +256 bytes)",
        "does not lie inside one allocation",
    )


def test_an_output_tensor_in_a_gap(tmp_path: Path) -> None:
    def patch(m: dict[str, Any]) -> None:
        m["graphs"][1]["outputs"][0]["address"] = GAP

    path = write(tmp_path / "graphs.kiln", patch=patch)
    only(problems_of(path), "graph 'decode/bs=2' output 0 (bfloat16[1, 64])", f"0x{GAP:x}")


def test_a_trajectory_the_region_could_not_have_made(tmp_path: Path) -> None:
    parts = good_parts()
    parts.trajectory[1] = (1 * MiB, 2 * MiB, 0)  # overlaps #0
    parts.trajectory.append((REGION_SIZE - MiB, 2 * MiB, 0))  # beyond the region
    path = write(tmp_path / "graphs.kiln", parts)
    problems = problems_of(path)
    assert len(problems) == 2, problems
    offset = REGION_SIZE - MiB
    assert f"allocation #4 (offset 0x{offset:x}, 2097152 bytes) extends beyond" in problems[0]
    assert "allocations #0 and #1 overlap at region offset 0x100000" in problems[1]


def test_a_fingerprint_without_the_region_skips_only_the_audit(tmp_path: Path) -> None:
    parts = good_parts()
    del parts.fingerprint["region_base"]
    set_pointer(parts.graphs[0].desc["nodes"][0], 0, GAP)  # not found: nothing to audit with
    path = write(tmp_path / "graphs.kiln", parts)
    result = verify_archive(path)
    only(result["problems"], "fingerprint: region_base is None", "not audited")
    assert result["checked"]["ranges_audited"] == 0 and result["checked"]["kernel_nodes"] == 5


def test_a_fingerprint_of_another_format_version(tmp_path: Path) -> None:
    parts = good_parts()
    parts.fingerprint["format_version"] = 2
    only(problems_of(write(tmp_path / "graphs.kiln", parts)), "format_version 2")


def test_every_problem_is_counted_but_the_list_is_bounded(tmp_path: Path) -> None:
    parts = good_parts()
    many = [kernel(0, "add", [GAP + 8 * i]) for i in range(MAX_LISTED + 50)]
    parts.graphs[1].desc["nodes"].extend(many)
    path = write(tmp_path / "graphs.kiln", parts)
    problems = problems_of(path)
    assert len(problems) == MAX_LISTED + 1
    assert problems[-1] == "... and 50 more problems not listed"


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    parts = good_parts()
    parts.graphs[0].desc["nodes"][2]["kernel"]["binary"] = 5
    set_pointer(parts.graphs[1].desc["nodes"][0], 0, GAP)

    def patch(m: dict[str, Any]) -> None:
        m["binaries"][1]["sha256"] = "00" * 32

    problems = problems_of(write(tmp_path / "graphs.kiln", parts, patch=patch))
    assert len(problems) == 3, problems
    assert "binary slot 1" in problems[0]
    assert "node 2 (kernel 'mul') uses binary slot 5" in problems[1]
    assert "graph 'decode/bs=2' node 0 (kernel 'add') argument byte 0" in problems[2]
