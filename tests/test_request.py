"""Unit tests of GenerationRequest (pytest_wiw.api.request): validation, prompts, seeds, digest, wire form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_wiw.api.request import MAX_INSTRUCTION_CHARS, MAX_SEED, GenerationRequest
from pytest_wiw.errors import RequestError


def _images(batch: int = 2, h: int = 16, w: int = 24, fill: int = 0) -> np.ndarray:
    images = np.full((batch, 3, h, w), fill, dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(batch, dtype=np.uint8)  # items differ
    return images


def _nav(**kw) -> GenerationRequest:
    args = dict(images=_images(2), actions=[[4, 1, 2, 3, 0], [4, 1, 1]], task_type="navigation",
                seed=0, request_model_name="wan21")
    args.update(kw)
    return GenerationRequest(**args)


def _manip(**kw) -> GenerationRequest:
    args = dict(images=_images(2), actions=["pick up the red cube", "  open the drawer  "],
                task_type="manipulation", seed=[1, 2], request_model_name="svd")
    args.update(kw)
    return GenerationRequest(**args)


def _raises(field: str, match: str, **kw):
    """Build a navigation request with ``kw`` and check the RequestError names ``field`` and the cause."""
    with pytest.raises(RequestError, match=match) as info:
        _nav(**kw)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    return info.value


# -- valid requests ---------------------------------------------------------------------------------

def test_valid_navigation_request_exposes_batch_size_and_fields():
    req = _nav()
    assert req.batch_size == 2
    assert req.task_type == "navigation"
    assert req.request_model_name == "wan21"
    assert req.extra == {}


def test_valid_manipulation_request_builds():
    assert _manip().batch_size == 2


def test_valid_freetext_request_builds():
    req = GenerationRequest(_images(1), ["a kitchen, camera pans left"], "freetext", 5, "cosmos20")
    assert req.batch_size == 1


def test_navigation_accepts_tuples_and_numpy_id_sequences():
    req = _nav(actions=[(4, 1), np.array([4, 2], dtype=np.int64)])
    assert req.batch_size == 2


def test_smallest_image_8x8_is_accepted():
    assert _nav(images=_images(2, 8, 8)).batch_size == 2


# -- prompts ----------------------------------------------------------------------------------------

def test_navigation_prompt_drops_leading_stop_and_ignores_placeholders():
    assert _nav().prompts() == [
        "Follow this sequence of camera motions: [move forward 0.2 m, turn left 22.5 degrees, "
        "turn right 22.5 degrees]",
        "Follow this sequence of camera motions: [move forward 0.2 m, move forward 0.2 m]",
    ]


def test_navigation_prompt_keeps_a_stop_that_does_not_open_the_row():
    req = _nav(images=_images(1), actions=[[1, 4]])
    assert req.prompts() == ["Follow this sequence of camera motions: [move forward 0.2 m, stop]"]


def test_manipulation_prompt_wraps_the_stripped_instruction():
    assert _manip().prompts() == ["A robot arm performs the task: pick up the red cube",
                                  "A robot arm performs the task: open the drawer"]


def test_freetext_prompt_is_the_text_unchanged():
    text = "  a hallway, the camera moves forward  "
    req = GenerationRequest(_images(1), [text], "freetext", 0, "svd")
    assert req.prompts() == [text]


# -- seeds and items --------------------------------------------------------------------------------

def test_int_seed_is_shared_by_every_item():
    assert _nav(seed=7).seeds == [7, 7]


def test_list_seed_gives_one_seed_per_item():
    assert _nav(seed=[3, 9]).seeds == [3, 9]


def test_seeds_returns_a_copy_of_the_list():
    req = _nav(seed=[3, 9])
    req.seeds.append(1)
    assert req.seeds == [3, 9]


def test_item_is_a_batch_of_one_with_that_items_image_action_and_seed():
    req = _nav(seed=[3, 9], extra={"k": 1})
    one = req.item(1)
    assert one.batch_size == 1
    np.testing.assert_array_equal(one.images, req.images[1:2])
    assert one.actions == [[4, 1, 1]]
    assert one.seed == 9
    assert one.task_type == "navigation" and one.request_model_name == "wan21"
    assert one.extra == {"k": 1} and one.extra is not req.extra


def test_item_with_explicit_seed_overrides_the_items_seed():
    assert _nav(seed=[3, 9]).item(0, seed=42).seeds == [42]


def test_with_seed_keeps_content_and_changes_seed():
    req = _nav(seed=0)
    other = req.with_seed([5, 6])
    assert other.seeds == [5, 6]
    assert other.content_digest() == req.content_digest()


# -- content digest ---------------------------------------------------------------------------------

def test_content_digest_ignores_the_seed():
    assert _nav(seed=0).content_digest() == _nav(seed=[11, 12]).content_digest()


def test_content_digest_is_a_sha256_hex_string_and_stable():
    d = _nav().content_digest()
    assert len(d) == 64 and int(d, 16) >= 0
    assert _nav().content_digest() == d


def test_content_digest_changes_with_one_pixel():
    images = _images(2)
    images[1, 2, 5, 5] = 200
    assert _nav(images=images).content_digest() != _nav().content_digest()


def test_content_digest_changes_with_image_shape_of_equal_bytes():
    a = _nav(images=np.zeros((2, 3, 8, 16), np.uint8))
    b = _nav(images=np.zeros((2, 3, 16, 8), np.uint8))
    assert a.content_digest() != b.content_digest()


def test_content_digest_changes_with_actions():
    assert _nav(actions=[[4, 1, 2, 3, 0], [4, 1, 2]]).content_digest() != _nav().content_digest()


def test_content_digest_changes_with_task_type_and_extra():
    base = _manip().content_digest()
    assert _manip(task_type="freetext").content_digest() != base
    assert _manip(extra={"guidance": 2}).content_digest() != base


def test_content_digest_accepts_numpy_action_sequences():
    as_array = _nav(actions=[np.array([4, 1, 2, 3, 0]), np.array([4, 1, 1])])
    assert as_array.content_digest() == _nav().content_digest()


# -- wire form --------------------------------------------------------------------------------------

def _wire_round_trip(req: GenerationRequest) -> GenerationRequest:
    header, arrays = req.to_wire()
    header = json.loads(json.dumps(header))  # what the protocol does to it
    return GenerationRequest.from_wire(header, arrays)


@pytest.mark.parametrize("make", [_nav, _manip], ids=["navigation", "manipulation"])
def test_to_wire_from_wire_round_trip_keeps_every_field(make):
    req = make(extra={"note": "x", "n": 2})
    back = _wire_round_trip(req)
    np.testing.assert_array_equal(back.images, req.images)
    assert back.images.dtype == np.uint8
    assert back.actions == [list(a) if not isinstance(a, str) else a for a in req.actions]
    assert back.task_type == req.task_type
    assert back.seeds == req.seeds
    assert back.request_model_name == req.request_model_name
    assert back.extra == req.extra
    assert back.content_digest() == req.content_digest()
    assert back.prompts() == req.prompts()


def test_to_wire_turns_numpy_id_sequences_into_int_lists():
    header, arrays = _nav(actions=[np.array([4, 1]), (4, 2)]).to_wire()
    assert header["actions"] == [[4, 1], [4, 2]]
    assert all(type(i) is int for a in header["actions"] for i in a)
    assert set(arrays) == {"images"}


def test_to_wire_header_is_json_for_a_numpy_integer_seed():
    header, _ = _nav(seed=np.int64(3)).to_wire()
    assert json.loads(json.dumps(header))["seed"] == 3


@pytest.mark.parametrize("missing", ["actions", "task_type", "seed", "request_model_name"])
def test_from_wire_names_a_missing_header_field(missing):
    header, arrays = _nav().to_wire()
    del header[missing]
    with pytest.raises(RequestError, match=f"^{missing}: missing from the request") as info:
        GenerationRequest.from_wire(header, arrays)
    assert info.value.field == missing


def test_from_wire_without_images_array_is_refused():
    header, _ = _nav().to_wire()
    with pytest.raises(RequestError, match="^images: missing: the request carries no image array") as info:
        GenerationRequest.from_wire(header, {})
    assert info.value.field == "images"


def test_from_wire_revalidates_the_arrays():
    header, arrays = _nav().to_wire()
    with pytest.raises(RequestError, match="^images: expected dtype uint8"):
        GenerationRequest.from_wire(header, {"images": arrays["images"].astype(np.float32)})


# -- invalid requests: each names its field and the cause ----------------------------------------------

def test_float_images_are_refused_naming_the_dtype():
    err = _raises("images", "expected dtype uint8", images=_images(2).astype(np.float32) / 255)
    assert "float32" in str(err)


def test_images_that_are_not_an_array_are_refused():
    _raises("images", "expected a numpy uint8 array.*got list", images=_images(2).tolist())


def test_two_dimensional_images_are_refused_naming_the_shape():
    _raises("images", r"expected shape \(B, 3, H, W\), got \(16, 24\)", images=np.zeros((16, 24), np.uint8))


def test_wrong_channel_count_is_refused():
    _raises("images", r"expected shape \(B, 3, H, W\), got \(2, 4, 16, 16\)",
            images=np.zeros((2, 4, 16, 16), np.uint8))


def test_channels_last_images_are_refused():
    _raises("images", r"got \(2, 16, 16, 3\)", images=np.zeros((2, 16, 16, 3), np.uint8))


def test_empty_batch_is_refused():
    _raises("images", "empty batch", images=np.zeros((0, 3, 16, 16), np.uint8), actions=[])


@pytest.mark.parametrize("h, w", [(7, 16), (16, 7)])
def test_too_small_image_is_refused_naming_its_size(h, w):
    _raises("images", rf"image of {h}x{w} is too small \(at least 8x8\)", images=_images(2, h, w))


def test_actions_length_mismatch_is_refused():
    _raises("actions", "1 entries for a batch of 2 images", actions=[[4, 1]])


def test_actions_that_are_not_a_list_are_refused():
    _raises("actions", "expected a list with one entry per batch item, got tuple", actions=([4, 1], [4, 2]))


def test_unknown_navigation_action_id_is_refused_naming_the_item_and_id():
    _raises("actions[1]", "unknown action id 9; navigation ids are 0-4", actions=[[4, 1], [4, 9]])


@pytest.mark.parametrize("bad", [-1, 5, True, 1.0, "1"])
def test_non_navigation_ids_are_refused(bad):
    _raises("actions[0]", "unknown action id", actions=[[4, bad], [4, 1]])


def test_str_action_for_navigation_is_refused():
    _raises("actions[0]", "navigation expects a sequence of action ids, got str", actions=["forward", [4, 1]])


def test_empty_navigation_sequence_is_refused():
    _raises("actions[1]", "empty action sequence", actions=[[4, 1], []])


@pytest.mark.parametrize("instruction", ["", "   \n"])
def test_empty_instruction_is_refused(instruction):
    with pytest.raises(RequestError, match=r"^actions\[1\]: empty instruction") as info:
        _manip(actions=["pick", instruction])
    assert info.value.field == "actions[1]"


def test_non_str_instruction_is_refused():
    with pytest.raises(RequestError, match=r"^actions\[0\]: manipulation expects an instruction string, got list"):
        _manip(actions=[[4, 1], "pick"])


def test_overlong_instruction_is_refused():
    text = "x" * (MAX_INSTRUCTION_CHARS + 1)
    with pytest.raises(RequestError, match=rf"^actions\[0\]: instruction of {MAX_INSTRUCTION_CHARS + 1} characters"):
        _manip(actions=[text, "pick"])


def test_unknown_task_type_is_refused_listing_the_known_ones():
    _raises("task_type", "expected one of navigation, manipulation, freetext, got 'flying'", task_type="flying")


def test_seed_list_length_mismatch_is_refused():
    _raises("seed", "3 seeds for a batch of 2", seed=[1, 2, 3])


@pytest.mark.parametrize("seed", [-1, [0, -5], MAX_SEED + 1])
def test_seed_outside_range_is_refused(seed):
    _raises("seed", r"is outside 0\.\.2\*\*63-1", seed=seed)


def test_largest_seed_is_accepted():
    assert _nav(seed=MAX_SEED).seeds == [MAX_SEED, MAX_SEED]


@pytest.mark.parametrize("seed", [True, [0, False]])
def test_bool_seed_is_refused(seed):
    _raises("seed", "expected an int, got bool", seed=seed)


@pytest.mark.parametrize("seed", [1.0, "3", None])
def test_non_int_seed_is_refused(seed):
    _raises("seed", f"expected an int, got {type(seed).__name__}", seed=seed)


@pytest.mark.parametrize("name", ["", None])
def test_empty_request_model_name_is_refused(name):
    _raises("request_model_name", "non-empty string", request_model_name=name)


def test_extra_that_is_not_a_mapping_is_refused():
    _raises("extra", "expected a mapping, got list", extra=[1])
