"""wrappers.hunyuan on a real tiny checkpoint (no mocks): HunyuanVideo-I2V, built once per module."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from wrapper_helpers import (  # noqa: E402
    assert_batch_items_equal_items_alone,
    assert_fingerprints_agree,
    assert_fingerprints_follow_running_tensor,
    assert_tiny_pipeline_checkpoint,
    assert_uint8_video,
    load_wrapper,
    make_tiny_leaving_rng,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
)

from pytest_wiw.errors import SpecError  # noqa: E402
from wrappers.hunyuan import (  # noqa: E402
    TINY_GENERATION,
    HunyuanImageToVideo,
    min_num_frames,
    returned_frames,
)

WM = "hunyuan"
_load = functools.partial(load_wrapper, HunyuanImageToVideo, WM)
_request = functools.partial(reference_request, WM)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_leaving_rng(HunyuanImageToVideo, WM, tmp_path_factory.mktemp("hunyuan") / "hunyuan", seed=0)


@pytest.fixture(scope="module")
def model(tiny):
    return _load(tiny)


@pytest.fixture(scope="module")
def out(model):
    return model.generate(_request())


def test_tiny_checkpoint_layout(tiny):
    assert_tiny_pipeline_checkpoint(tiny, TINY_GENERATION)


def test_prompt_template_fits_the_tiny_tokenizer(model):
    t = model.prompt_template
    # 49 CLIP-224/32 features in place of the image token; the user turn starts after the 2nd header.
    assert (t["image_emb_start"], t["image_emb_len"], t["image_emb_end"]) == (3, 49, 52)
    ids = model.pipe.tokenizer(t["template"].format("stop"))["input_ids"]
    assert model.pipe.tokenizer.convert_ids_to_tokens(ids[t["crop_start"]]) == "stop"


def test_output_dtype_and_shape(model, out):
    assert_uint8_video(model, out, 2, shape=(2, 4, 3, 32, 32))
    assert out.std() > 0 and all(out[i].std() > 0 for i in range(2))  # not a constant video
    assert any("drops the first 4" in n for n in model.notes)


def test_same_seed_is_bitwise_equal(model, out):
    assert np.array_equal(model.generate(_request()), out)


def test_different_seed_differs(model, out):
    other = model.generate(_request(seed=(21, 22)))
    assert mean_abs_diff(other, out) >= 2.0


def test_batch_item_equals_item_alone(model, out):
    # Items run one by one: bitwise.
    assert_batch_items_equal_items_alone(model, _request(), out, within_tolerance=False)


def test_fingerprints_agree_with_files(model):
    assert_fingerprints_agree(model)
    components = {k.split("/", 1)[0] for k in model.weight_fingerprints()}
    assert {"transformer", "vae", "text_encoder", "text_encoder_2"} <= components


def test_fingerprints_follow_the_running_llava_weights(tiny):
    # Llava is saved under transformers' legacy names; the lookup must still reach the running tensors.
    model = _load(tiny)
    key = next(k for k in model.ckpt.fingerprint_keys()
               if k.startswith("text_encoder/") and model.running_tensor(k) is not None
               and model.running_tensor(k).numel() > 1 and "language_model" in k)
    assert_fingerprints_follow_running_tensor(model, key)


def test_frame_accounting():
    assert [returned_frames(n) for n in (1, 4, 5, 8, 9, 33)] == [0, 0, 1, 1, 5, 29]
    assert (min_num_frames(1), min_num_frames(4), min_num_frames(14)) == (5, 9, 21)


@pytest.mark.parametrize("num_frames, minimum", [(4, 9), (8, 9)])
def test_too_few_frames_is_a_clear_error(tiny, num_frames, minimum):
    with pytest.raises(SpecError, match=rf"num_frames={num_frames} is too few.*minimum is num_frames={minimum}"):
        _load(tiny, num_frames=num_frames)


def test_a_single_output_frame_needs_five(tiny):
    with pytest.raises(SpecError, match=r"returning 0 \(an empty video\).*minimum is num_frames=5"):
        _load(tiny, num_frames=4, num_output_frames=1)
