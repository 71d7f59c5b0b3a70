"""wrappers.cosmos on real tiny checkpoints (no mocks): cosmos20 and FTcosmos, built once per module."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import CosmosTransformer3DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from wrapper_helpers import (  # noqa: E402
    assert_batch_items_equal_items_alone,
    assert_component_folder_checkpoint,
    assert_fingerprints_agree,
    assert_fingerprints_catch_base_weights,
    assert_flat_component_checkpoint,
    assert_shares_modules_with_base,
    assert_uint8_video,
    assert_zero_shot_restores_on_error,
    ft_and_zero_shot_outputs,
    load_wrapper,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
    save_altered_component,
    tiny_swap_checkpoints,
)

from pytest_wiw.checkpoints import files as checkpoint  # noqa: E402
from pytest_wiw.errors import CheckpointError  # noqa: E402
from wrappers.common.component_swap import save_tiny_fine_tune  # noqa: E402
from wrappers.cosmos import _FT_NOISE, TINY_GENERATION, Cosmos2VideoToWorld  # noqa: E402

_load = functools.partial(load_wrapper, Cosmos2VideoToWorld)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_swap_checkpoints(Cosmos2VideoToWorld, tmp_path_factory.mktemp("cosmos"), "cosmos20", "FTcosmos")


@pytest.fixture(scope="module")
def base_model(tiny):
    return _load("cosmos20", tiny["base"])


@pytest.fixture(scope="module")
def ft_model(tiny):
    return _load("FTcosmos", tiny["ft"], base=tiny["base"])


@pytest.fixture(scope="module")
def base_out(base_model):
    return base_model.generate(reference_request("cosmos20"))


def test_tiny_checkpoints_have_the_expected_layout(tiny):
    base = checkpoint.open_checkpoint(tiny["base"])
    assert base.format == "diffusers"
    assert checkpoint.card_generation(base.card) == TINY_GENERATION
    # As WIW's converter writes it: transformer/ holding the weights alone, no config.json.
    assert_component_folder_checkpoint(tiny["ft"], "transformer", tiny["base"], TINY_GENERATION)
    assert sorted(p.name for p in (tiny["ft"] / "transformer").iterdir()) == ["diffusion_pytorch_model.safetensors"]
    assert checkpoint.open_checkpoint(tiny["same"]).format == "component"


def test_config_less_transformer_takes_the_base_config_and_says_so(ft_model, tiny):
    assert (f"transformer/diffusion_pytorch_model.safetensors has no config.json beside it (as WIW's converter "
            f"utils/pt_to_safetensors_cosmos.py writes it): config taken from the base's transformer/config.json "
            f"({tiny['base'] / 'transformer' / 'config.json'}), every tensor's shape fits it") in ft_model.notes


def test_older_transformer_folder_layout_still_loads_the_same_weights(ft_model, tiny, tmp_path):
    """transformer/ with its config.json (diffusers' own save) is a real layout too: same weights, same output."""
    older = save_tiny_fine_tune(CosmosTransformer3DModel, tmp_path / "older", tiny["base"], 0,
                                noise_scale=_FT_NOISE, generation=TINY_GENERATION, description="older layout")
    assert (older / "transformer" / "config.json").is_file()
    model = _load("FTcosmos", older, base=tiny["base"])
    assert not any("config.json" in n for n in model.notes)
    assert_fingerprints_agree(model)
    request = reference_request("FTcosmos", batch=1)
    assert np.array_equal(model.generate(request), ft_model.generate(request))


@pytest.mark.parametrize("given", ["file", "its folder"])
def test_bare_safetensors_loads_with_the_base_config(tiny, given):
    """The converter's output file, or the transformer/ folder holding it alone (no config.json)."""
    file = tiny["ft"] / "transformer" / "diffusion_pytorch_model.safetensors"
    model = _load("FTcosmos", file if given == "file" else file.parent, base=tiny["base"], **TINY_GENERATION)
    assert model.ckpt.format == "safetensors" and model.ckpt.files == (file,)
    assert_fingerprints_agree(model)
    assert not any("/" in k for k in model.weight_fingerprints())  # bare tensor names
    assert any("config taken from the base's transformer/config.json" in n for n in model.notes)


def _config_less_copy(tiny, dst, **config_changes):
    """A config-less FTcosmos checkpoint at ``dst`` whose transformer has the base's config but ``config_changes``."""
    save_altered_component(CosmosTransformer3DModel, tiny["base"] / "transformer", dst, card_from=tiny["ft"],
                           subfolder="transformer", **config_changes)
    (dst / "transformer" / "config.json").unlink()
    return dst


def test_config_less_transformer_that_misfits_names_the_first_misfitting_tensor(tiny, tmp_path):
    bad = _config_less_copy(tiny, tmp_path / "misfit", mlp_ratio=4.0)  # every feed-forward weight is wider
    file = bad / "transformer" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(CheckpointError) as err:
        _load("FTcosmos", bad, base=tiny["base"])
    message = str(err.value)
    assert message.startswith(f"{file} (config from the base: {tiny['base'] / 'transformer' / 'config.json'}): "
                              "tensor transformer_blocks.0.ff.net.0.proj.weight has shape [128, 32] in the file, "
                              "[64, 32] in the base's transformer"), message


def test_config_less_transformer_with_extra_blocks_names_them(tiny, tmp_path):
    bad = _config_less_copy(tiny, tmp_path / "deeper", num_layers=2)
    with pytest.raises(CheckpointError, match=r"tensor\(s\) not in the base's transformer \(transformer_blocks\.1\."):
        _load("FTcosmos", bad, base=tiny["base"])


def test_transformer_in_training_names_gets_the_converter_command(tiny, tmp_path):
    raw = tmp_path / "unconverted"
    (raw / "transformer").mkdir(parents=True)
    save_file({"net.blocks.0.self_attn.q_proj.weight": torch.zeros(4, 4)},
              str(raw / "transformer" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match=re.escape("is in Cosmos training names (net.blocks.N...)") + ".*"
                       + re.escape("python utils/pt_to_safetensors_cosmos.py --src_pt TRAINING.pt")):
        _load("FTcosmos", raw, base=tiny["base"], **TINY_GENERATION)


@pytest.mark.parametrize("inside_folder", [False, True])
def test_raw_training_pt_is_refused_with_the_converter_command(tmp_path, inside_folder):
    """Never unpickled: the tensor names are read from the pickle's opcodes."""
    pt = tmp_path / "ft" / "iter_000001000.pt" if inside_folder else tmp_path / "iter_000001000.pt"
    pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"net.blocks.0.self_attn.q_proj.weight": torch.zeros(2, 2),
                          "net.x_embedder.proj.1.weight": torch.zeros(2)}}, pt)
    with pytest.raises(CheckpointError) as err:
        checkpoint.open_checkpoint(pt.parent if inside_folder else pt)
    message = str(err.value)
    assert "pickle" in message and "refused" in message
    assert ("raw Cosmos-Predict2 training checkpoint (keys net.blocks.N...): convert it with World-in-World's "
            f"converter into the transformer FTcosmos loads, then test that folder: python "
            f"utils/pt_to_safetensors_cosmos.py --src_pt {pt} ") in message, message
    assert "pytest --wm FTcosmos --ckpt-path=FT_DIR --base-ckpt-path=BASE" in message


def test_other_pickles_get_no_converter_command(tmp_path):
    pt = tmp_path / "lora.pt"
    torch.save({"blocks.0.attn.lora_A.weight": torch.zeros(2, 2)}, pt)
    with pytest.raises(CheckpointError) as err:
        checkpoint.open_checkpoint(pt)
    assert "pickle checkpoints are refused" in str(err.value)
    assert "pt_to_safetensors_cosmos" not in str(err.value)


def test_output_dtype_and_shape(base_model, base_out):
    assert_uint8_video(base_model, base_out, 2, shape=(2, 4, 3, 32, 32))
    assert base_out.std() > 0  # not a constant image


def test_same_seed_is_bitwise_equal(base_model, base_out):
    assert np.array_equal(base_model.generate(reference_request("cosmos20")), base_out)
    with base_model.zero_shot():  # a zero-shot type runs its base weights anyway
        assert np.array_equal(base_model.generate(reference_request("cosmos20")), base_out)


def test_different_seed_differs(base_model, base_out):
    other = base_model.generate(reference_request("cosmos20", seed=(21, 22)))
    assert mean_abs_diff(other, base_out) > 0.5


def test_batch_item_equals_item_alone(base_model, base_out):
    assert_batch_items_equal_items_alone(base_model, reference_request("cosmos20"), base_out)


def test_ft_differs_from_zero_shot(ft_model):
    request = reference_request("FTcosmos")
    ft_out, zs_out = ft_and_zero_shot_outputs(ft_model, request)
    assert mean_abs_diff(ft_out, zs_out) > 0.2
    # Leaving zero_shot() restores the fine-tuned transformer.
    assert np.array_equal(ft_model.generate(request), ft_out)


def test_zero_shot_equals_base_wrapper(ft_model, base_out):
    with ft_model.zero_shot():
        zs_out = ft_model.generate(reference_request("FTcosmos"))
    assert np.array_equal(zs_out, base_out)


def test_zero_shot_restores_ft_on_error(ft_model):
    assert_zero_shot_restores_on_error(ft_model, "transformer")


def test_ft_shares_modules_with_base(ft_model):
    assert_shares_modules_with_base(ft_model, "transformer", shared=("vae", "text_encoder"))


def test_fingerprints_agree_with_files(base_model, ft_model):
    for model in (base_model, ft_model):
        assert_fingerprints_agree(model)
    assert all(k.startswith("transformer/") for k in ft_model.weight_fingerprints())


def test_fingerprints_catch_base_weights(tiny):
    model = _load("FTcosmos", tiny["ft"], base=tiny["base"])
    assert_fingerprints_catch_base_weights(model, tiny["base"], "transformer")


def test_identical_ft_equals_zero_shot(tiny, base_out):
    model = _load("FTcosmos", tiny["same"], base=tiny["base"])
    assert_flat_component_checkpoint(model)
    out, zs = ft_and_zero_shot_outputs(model, reference_request("FTcosmos"))
    assert np.array_equal(out, zs)
    assert np.array_equal(out, base_out)


def test_ft_without_base_is_a_checkpoint_error(tiny):
    with pytest.raises(CheckpointError, match="base"):
        _load("FTcosmos", tiny["ft"])


def test_ft_transformer_that_does_not_fit_the_base_is_a_checkpoint_error(tiny, tmp_path):
    bad = save_altered_component(CosmosTransformer3DModel, tiny["base"] / "transformer", tmp_path / "FTbad",
                                 card_from=tiny["ft"], num_layers=2)
    with pytest.raises(CheckpointError, match="num_layers 2"):
        _load("FTcosmos", bad, base=tiny["base"])


def test_whole_pipeline_folder_loads_its_transformer(tiny, tmp_path, base_out):
    """FTcosmos given a whole pipeline folder (here the base itself): its transformer/ runs, the note says
    the base is the FT checkpoint itself."""
    model = _load("FTcosmos", tiny["base"], base=tiny["base"])
    assert f"the base checkpoint is the FT checkpoint itself ({tiny['base']}): FT and zero-shot run the same " \
           "transformer" in model.notes
    assert_fingerprints_agree(model)
    out, zs = ft_and_zero_shot_outputs(model, reference_request("FTcosmos"))
    assert np.array_equal(out, zs) and np.array_equal(out, base_out)


def test_transformer_needing_torchvision_without_it_is_a_checkpoint_error(tiny, tmp_path):
    """Real Cosmos-Predict2 transformers (concat_padding_mask=True) need torchvision: say so at load, not
    with a NameError at the first generation."""
    import shutil

    try:
        import torchvision  # noqa: F401
        pytest.skip("torchvision is installed here: the transformer loads")
    except ImportError:
        pass
    real_like = tmp_path / "cosmos20"
    shutil.copytree(tiny["base"], real_like)
    save_altered_component(CosmosTransformer3DModel, tiny["base"] / "transformer", real_like, card_from=tiny["base"],
                           subfolder="transformer", concat_padding_mask=True)
    with pytest.raises(CheckpointError, match="concat_padding_mask=True, which needs torchvision"):
        _load("cosmos20", real_like)
