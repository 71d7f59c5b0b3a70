"""wrappers.cosmos25 on a real tiny checkpoint (no mocks): Cosmos-Predict2.5, built once per module."""

from __future__ import annotations

import functools
import types

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

from wrappers.cosmos import NoOpSafetyChecker  # noqa: E402
from wrappers.cosmos25 import TINY_GENERATION, Cosmos25Predict  # noqa: E402

WM = "cosmos25"
_load = functools.partial(load_wrapper, Cosmos25Predict, WM)
_request = functools.partial(reference_request, WM)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_leaving_rng(Cosmos25Predict, WM, tmp_path_factory.mktemp("cosmos25") / "cosmos25", seed=0)


@pytest.fixture(scope="module")
def model(tiny):
    return _load(tiny)


@pytest.fixture(scope="module")
def out(model):
    return model.generate(_request())


def test_tiny_checkpoint_layout(tiny):
    assert_tiny_pipeline_checkpoint(tiny, TINY_GENERATION)


def test_loads_with_the_noop_safety_checker_and_a_chat_template(model):
    assert isinstance(model.pipe.safety_checker, NoOpSafetyChecker)
    assert model.pipe.tokenizer.chat_template


def test_output_dtype_and_shape(model, out):
    assert_uint8_video(model, out, 2, shape=(2, 4, 3, 32, 32))
    assert out.std() > 0 and all(out[i].std() > 0 for i in range(2))  # not a constant video


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
    assert {"transformer", "vae", "text_encoder"} <= components


def test_fingerprints_follow_the_running_qwen_weights(tiny):
    # Qwen2.5-VL is saved under transformers' legacy names; the lookup must still reach the running tensors.
    model = _load(tiny)
    key = next(k for k in model.ckpt.fingerprint_keys()
               if k.startswith("text_encoder/model.layers.") and model.running_tensor(k) is not None)
    assert_fingerprints_follow_running_tensor(model, key)


def test_image_input_matches_the_pipelines_image_path(model, monkeypatch):
    """The torchvision-free clip path gives the frames the pipeline's own image= path gives.

    The image path needs torchvision.transforms.functional.to_tensor; a stand-in computing the same
    (uint8 / 255, CHW) runs it here.
    """
    import diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict as cosmos25_module

    def to_tensor(pic):
        return torch.from_numpy(np.array(pic, dtype=np.uint8)).permute(2, 0, 1).float().div(255)

    stand_in = types.SimpleNamespace(transforms=types.SimpleNamespace(
        functional=types.SimpleNamespace(to_tensor=to_tensor)))
    monkeypatch.setattr(cosmos25_module, "torchvision", stand_in, raising=False)
    g = model.generation
    request = _request(batch=1)
    image = model.images_as_pil(request, g.height, g.width)[0]
    common = dict(prompt=request.prompts()[0], height=g.height, width=g.width, num_frames=g.num_frames,
                  num_inference_steps=g.steps, guidance_scale=g.guidance_scale, output_type="np")
    with torch.inference_mode():
        via_image = model.pipe(image=image, generator=torch.Generator().manual_seed(5), **common).frames
        via_clip = model.pipe(video=model._conditioning_clip(image), num_latent_conditional_frames=1,
                              generator=torch.Generator().manual_seed(5), **common).frames
    assert np.array_equal(np.asarray(via_image), np.asarray(via_clip))
