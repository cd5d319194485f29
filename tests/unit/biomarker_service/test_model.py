from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from biomarker_service.artifact import (
    ArtifactInfo,
    Provenance,
    load_artifact,
    read_info,
    save_artifact,
)
from biomarker_service.model import temporal_shift, tsm_resnet18
from biomarker_service.model.tsm import load_torchvision_weights
from lus.schema import load_schema
from lus.video import InputSpec

SMALL = InputSpec(frames_per_clip=4, size=32, clips=2)


def test_shift_moves_one_eighth_each_way_and_zero_fills() -> None:
    clips, frames, channels = 2, 3, 16
    x = torch.arange(clips * frames * channels, dtype=torch.float32).view(
        clips * frames, channels, 1, 1
    )
    out = temporal_shift(x, frames).view(clips, frames, channels)
    src = x.view(clips, frames, channels)
    assert torch.equal(out[:, :-1, :2], src[:, 1:, :2])  # shift left
    assert torch.equal(out[:, -1, :2], torch.zeros(clips, 2))
    assert torch.equal(out[:, 1:, 2:4], src[:, :-1, 2:4])  # shift right
    assert torch.equal(out[:, 0, 2:4], torch.zeros(clips, 2))
    assert torch.equal(out[:, :, 4:], src[:, :, 4:])  # unchanged


def test_shift_never_mixes_clips() -> None:
    x = torch.zeros(2 * 4, 8, 2, 2)
    x[:4] = 1.0  # first clip ones, second zeros
    out = temporal_shift(x, 4)
    assert out[4:].abs().sum() == 0


@settings(max_examples=5, deadline=None)
@given(schema_name=st.sampled_from(["gare2022-lus38", "pocus-weak6"]), batch=st.integers(1, 3))
def test_head_matches_schema(schema_name: str, batch: int) -> None:
    schema = load_schema(schema_name)
    model = tsm_resnet18(schema=schema, spec=SMALL, width=8).eval()
    out = model(torch.randint(0, 256, (batch, 4, 32, 32), dtype=torch.uint8))
    assert out.shape == (batch, len(schema))


def test_eval_is_deterministic_and_batched_equals_single() -> None:
    model = tsm_resnet18(schema=load_schema(), spec=SMALL, width=8).eval()
    clips = torch.randint(0, 256, (3, 4, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        batched = model(clips)
        single = torch.cat([model(clips[i : i + 1]) for i in range(3)])
        assert torch.equal(model(clips), batched)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_wrong_clip_length_is_refused() -> None:
    model = tsm_resnet18(schema=load_schema(), spec=SMALL, width=8)
    with pytest.raises(ValueError, match="5 frames"):
        model(torch.zeros(1, 5, 32, 32))


def test_torchvision_weights_file_loads_all_but_head(tmp_path: Path) -> None:
    donor = tsm_resnet18(schema=load_schema("pocus-weak6"), spec=SMALL)
    state = {k: v for k, v in donor.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet head, which must be skipped
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = tsm_resnet18(schema=load_schema(), spec=SMALL)
    missing = load_torchvision_weights(model, path)
    assert missing == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(model.conv1.weight, donor.conv1.weight)


def test_artifact_round_trip_keeps_weights_schema_and_provenance(tmp_path: Path) -> None:
    schema = load_schema()
    model = tsm_resnet18(schema=schema, spec=SMALL, width=8).eval()
    info = ArtifactInfo(
        "v-test", schema, SMALL, 8, Provenance(training_data="unit test", notice="not clinical")
    )
    path = tmp_path / "model.safetensors"
    save_artifact(path, model, info)
    loaded, loaded_info = load_artifact(path)
    assert loaded_info == read_info(path)
    assert loaded_info.schema.schema_id == schema.schema_id
    assert loaded_info.spec == SMALL and loaded_info.provenance.notice == "not clinical"
    clips = torch.randint(0, 256, (1, 4, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.equal(model(clips), loaded(clips))
    # Readable by the services' own user, whoever wrote it (safetensors alone makes it 0600).
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_missing_artifact_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.safetensors does not exist"):
        read_info(tmp_path / "absent.safetensors")


def test_non_artifact_file_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="not a LUS biomarker artifact"):
        read_info(path)


def test_a_file_that_is_not_safetensors_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match=r"garbage\.safetensors is not a safetensors file"):
        read_info(path)
