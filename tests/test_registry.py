"""Unit tests of the wm_type registry (pytest_wiw.api.registry), its listing and the ``pytest-wiw list`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_wiw.api.registry as registry_mod
from pytest_wiw.api.registry import (
    CATEGORIES,
    FINETUNE_KINDS,
    GenerationDefaults,
    Tolerances,
    WMSpec,
    load_registry,
    register_wm,
    registry_problems,
    unpinned_requirements,
)
from pytest_wiw.errors import SpecError
from pytest_wiw.plugin.listing import registry_table

WIW_TYPES = {  # name: (category, base)
    "wan21": ("text", None), "ltx": ("text", None), "hunyuan": ("text", None), "nwm": ("text", None),
    "cosmos20": ("text", None), "cosmos25": ("text", None), "wan22": ("text", None),
    "wan22-14B": ("text", None), "svd": ("text", None), "gen4tur": ("text", None),
    "FTcosmos": ("FTtext", "cosmos20"), "FTltx": ("FTtext", "ltx"), "FTwan21": ("FTtext", "wan21"),
    "FTwan22": ("FTtext", "wan22"), "FTwan22-14B": ("FTtext", "wan22-14B"),
    "se3ds": ("camera", None), "pathdreamer": ("camera", None), "igen": ("action", "svd"),
    "GTsim": ("GTsim", None),
}
RUNNABLE_NOW = {"svd", "wan21", "cosmos20", "FTwan21", "FTcosmos"}
PREFIX = "unit-test-"


@pytest.fixture
def clean_registry():
    """Load the real registry, then remove whatever a test registers on top of it."""
    before = set(load_registry())
    yield
    for name in set(registry_mod._REGISTRY) - before:
        del registry_mod._REGISTRY[name]


def _defaults(**kw) -> GenerationDefaults:
    args = dict(height=16, width=16, out_height=16, out_width=16, num_frames=5, steps=2)
    args.update(kw)
    return GenerationDefaults(**args)


def _register(name: str, **kw) -> WMSpec:
    args = dict(wrapper="wrappers.common.tiny_text:Tiny", category="text", defaults=_defaults())
    args.update(kw)
    return register_wm(PREFIX + name, **args)


def _spec(name: str = "spec", **kw) -> WMSpec:
    args = dict(name=PREFIX + name, wrapper="wrappers.svd:StableVideoDiffusion", category="text",
                defaults=_defaults())
    args.update(kw)
    return WMSpec(**args)


# -- the WIW roster -------------------------------------------------------------------------------

def test_registry_holds_the_19_wiw_wm_types(clean_registry):
    names = {n for n in load_registry() if not n.startswith(PREFIX)}
    assert len(WIW_TYPES) == 19
    assert names == set(WIW_TYPES)


@pytest.mark.parametrize("name", sorted(WIW_TYPES))
def test_wiw_type_has_its_category_and_base(name, clean_registry):
    spec = load_registry()[name]
    category, base = WIW_TYPES[name]
    assert spec.category == category
    assert spec.base == base
    assert spec.is_ft == (base is not None)
    assert spec.family == (base or name)
    if base is not None:
        assert spec.finetune in FINETUNE_KINDS


def test_ft_bases_are_zero_shot_types_of_the_registry(clean_registry):
    registry = load_registry()
    for spec in registry.values():
        if spec.base:
            assert spec.base in registry, spec.name
            assert registry[spec.base].base is None, spec.name


def test_known_runnable_types_are_runnable_and_others_say_why_not(clean_registry):
    for spec in load_registry().values():
        if spec.name in RUNNABLE_NOW:
            assert spec.runnable, spec.name
        if not spec.runnable:
            assert spec.unavailable and spec.unavailable.strip(), spec.name


@pytest.mark.parametrize("name", sorted(RUNNABLE_NOW))
def test_runnable_type_has_an_existing_fully_pinned_env_file(name, clean_registry):
    registry = load_registry()
    spec = registry[name]
    env = spec.env_path()
    assert env is not None and env.is_file(), f"{name}: env file {env} missing"
    assert unpinned_requirements(env.read_text()) == []
    assert registry_problems(spec, registry) == []


def test_every_runnable_spec_has_no_registry_problems(clean_registry):
    registry = load_registry()
    runnable = [s for s in registry.values() if s.runnable]
    assert runnable
    assert {s.name: registry_problems(s, registry) for s in runnable} == {s.name: [] for s in runnable}


def test_load_registry_returns_a_copy(clean_registry):
    load_registry().pop("svd")
    assert "svd" in load_registry()


# -- register_wm: accepted -------------------------------------------------------------------------------

def test_register_wm_returns_the_spec_and_stores_it(clean_registry):
    spec = _register("ok", tasks=("navigation", "freetext"), max_batch=3)
    assert load_registry()[PREFIX + "ok"] is spec
    assert spec.tasks == ("navigation", "freetext")
    assert spec.runnable and not spec.is_ft


def test_registering_identical_settings_twice_is_allowed(clean_registry):
    first = _register("twice", expected_failures={"seed determinism": "known"})
    second = _register("twice", expected_failures={"seed determinism": "known"})
    assert second == first
    assert load_registry()[PREFIX + "twice"] == first


def test_unavailable_type_without_wrapper_is_accepted(clean_registry):
    spec = _register("remote", wrapper=None, defaults=None, unavailable="a remote API")
    assert not spec.runnable
    assert spec.unavailable == "a remote API"


def test_ft_type_with_base_and_finetune_is_accepted(clean_registry):
    spec = _register("ft", category="FTtext", base="wan21", finetune="lora")
    assert spec.is_ft and spec.family == "wan21"


# -- register_wm: refused, saying what to set -------------------------------------------------------------

@pytest.mark.parametrize("bad", ["has space", "slash/name", "brack[et]", "colon:x", "é"])
def test_name_with_bad_characters_is_refused(bad, clean_registry):
    with pytest.raises(SpecError, match=r"name must be letters, digits, '_', '\.', '-'") as info:
        _register(bad)
    assert repr(PREFIX + bad) in str(info.value)
    assert PREFIX + bad not in registry_mod._REGISTRY


def test_empty_name_is_refused(clean_registry):
    with pytest.raises(SpecError, match="register_wm\\(''\\): name must be"):
        register_wm("", wrapper="a:B", category="text", defaults=_defaults())


def test_unknown_category_is_refused_listing_the_categories(clean_registry):
    with pytest.raises(SpecError, match=rf"category must be one of {', '.join(CATEGORIES)}, got 'video'"):
        _register("cat", category="video")


@pytest.mark.parametrize("wrapper", ["wrappers.wan.WanImageToVideo", "wrappers.wan:", ":Cls", "a:b:C",
                                     "wrappers/wan:Cls", "1mod:Cls"])
def test_wrapper_that_is_not_module_colon_class_is_refused(wrapper, clean_registry):
    expected = r"wrapper must be 'module:Class', e\.g\. 'wrappers\.wan:WanImageToVideo'"
    with pytest.raises(SpecError, match=expected) as info:
        _register("wrap", wrapper=wrapper)
    assert repr(wrapper) in str(info.value)


def test_ft_type_without_base_is_refused(clean_registry):
    with pytest.raises(SpecError, match=r"an FT type needs base='<zero-shot wm_type>'"):
        _register("nobase", category="FTtext", finetune="lora")


def test_unavailable_ft_type_without_base_is_refused(clean_registry):
    with pytest.raises(SpecError, match="base="):
        _register("ft-unavail", wrapper=None, defaults=None, category="FTtext", unavailable="planned")


@pytest.mark.parametrize("finetune", [None, "qlora"])
def test_ft_base_with_unknown_finetune_kind_is_refused(finetune, clean_registry):
    with pytest.raises(SpecError, match=rf"finetune must say how the checkpoint applies: one of "
                                        rf"{', '.join(FINETUNE_KINDS)}, got {finetune!r}"):
        _register("kind", category="FTtext", base="wan21", finetune=finetune)


@pytest.mark.parametrize("tasks", [(), ("navigation", "teleport")])
def test_empty_or_unknown_tasks_are_refused(tasks, clean_registry):
    with pytest.raises(SpecError, match=r"tasks must be a non-empty subset of \('navigation', 'manipulation', "
                                        r"'freetext'\), got " + repr(tasks).replace("(", r"\(").replace(")", r"\)")):
        _register("tasks", tasks=tasks)


def test_missing_defaults_are_refused_showing_what_to_give(clean_registry):
    with pytest.raises(SpecError, match=r"defaults=GenerationDefaults\(height=\.\.\., width=\.\.\..*is required"):
        _register("nodefaults", defaults=None)


def test_no_wrapper_and_no_unavailable_reason_is_refused(clean_registry):
    with pytest.raises(SpecError, match="without a wrapper, give unavailable='why it cannot run here'"):
        _register("nowrapper", wrapper=None)


def test_max_batch_below_one_is_refused(clean_registry):
    with pytest.raises(SpecError, match="max_batch must be at least 1"):
        _register("batch", max_batch=0)


@pytest.mark.parametrize(("field", "value", "message"), [("max_image_side", 4, "max_image_side must be at least 8"),
                                                        ("max_actions", 0, "max_actions must be at least 1")])
def test_request_limits_below_their_minimum_are_refused(clean_registry, field, value, message):
    with pytest.raises(SpecError, match=message):
        _register("limits", **{field: value})


def test_request_limits_travel_to_the_worker(clean_registry):
    spec = _register("limits", max_image_side=512, max_actions=9)
    again = WMSpec.from_dict(spec.to_dict())
    assert (again.max_image_side, again.max_actions) == (512, 9)


def test_same_name_with_different_settings_is_refused_and_first_kept(clean_registry):
    first = _register("clash", wrapper="wrappers.a:One")
    with pytest.raises(SpecError, match=rf"'{PREFIX}clash' is registered twice with different settings "
                                        r"\(wrappers\.a:One and wrappers\.b:Two\); pick another name"):
        _register("clash", wrapper="wrappers.b:Two")
    assert load_registry()[PREFIX + "clash"] is first


def test_reregistering_a_wiw_type_differently_is_refused(clean_registry):
    svd = load_registry()["svd"]
    with pytest.raises(SpecError, match="'svd' is registered twice"):
        register_wm("svd", wrapper="wrappers.mine:Svd", category="text", defaults=_defaults())
    assert load_registry()["svd"] is svd


def test_refused_registration_leaves_nothing_behind(clean_registry):
    with pytest.raises(SpecError):
        _register("refused", category="nope")
    assert PREFIX + "refused" not in load_registry()


# -- registry_problems ------------------------------------------------------------------------------

@pytest.fixture
def pinned_env(tmp_path: Path) -> Path:
    env = tmp_path / "env.txt"
    env.write_text("torch==2.13.0\nnumpy==2.4.6\n")
    return env


def test_registry_problems_finds_nothing_in_a_complete_spec(pinned_env):
    base = _spec("base", env=str(pinned_env))
    ft = _spec("ft", category="FTtext", base=base.name, finetune="lora", env=str(pinned_env))
    assert registry_problems(ft, {base.name: base, ft.name: ft}) == []


def test_registry_problems_flags_an_unknown_base(pinned_env):
    ft = _spec("ft", category="FTtext", base=PREFIX + "ghost", finetune="lora", env=str(pinned_env))
    assert registry_problems(ft, {ft.name: ft}) == [f"base '{PREFIX}ghost' is not a registered wm_type"]


def test_registry_problems_flags_an_ft_base_that_is_itself_ft(pinned_env):
    zero = _spec("zero", env=str(pinned_env))
    mid = _spec("mid", category="FTtext", base=zero.name, finetune="lora", env=str(pinned_env))
    top = _spec("top", category="FTtext", base=mid.name, finetune="lora", env=str(pinned_env))
    registry = {s.name: s for s in (zero, mid, top)}
    assert registry_problems(top, registry) == [
        f"base '{PREFIX}mid' is itself an FT type; name the zero-shot type"]


def test_registry_problems_flags_a_missing_env_file(tmp_path):
    missing = tmp_path / "nope.txt"
    spec = _spec(env=str(missing))
    assert registry_problems(spec, {spec.name: spec}) == [f"env file {missing} does not exist"]


def test_registry_problems_flags_no_env_at_all():
    spec = _spec(env=None)
    problems = registry_problems(spec, {spec.name: spec})
    assert problems == ["no env= requirements file: name the pinned environment its worker runs in"]


def test_registry_problems_names_the_env_file_and_each_unpinned_line(tmp_path):
    env = tmp_path / "loose.txt"
    env.write_text("torch>=2\nnumpy\npillow==13.0.0\n")
    spec = _spec(env=str(env))
    assert registry_problems(spec, {spec.name: spec}) == [
        "loose.txt: line 1 'torch>=2' is not an exact '==' pin",
        "loose.txt: line 2 'numpy' is not an exact '==' pin",
    ]


def test_relative_env_resolves_inside_the_wrapper_package():
    spec = _spec(wrapper="wrappers.svd:StableVideoDiffusion", env="envs/diffusers-0.42.txt")
    import wrappers

    assert spec.env_path() == Path(wrappers.__file__).parent / "envs" / "diffusers-0.42.txt"
    assert spec.env_path().is_file()


@pytest.mark.parametrize("line", ["torch>=2", "numpy", "a==1,<2", "b~=1.0", "c!=1.0", "d==1.*", "e<=3",
                                  "f==1.0,!=1.1", "g==1.0,==2.0"])
def test_unpinned_requirement_line_is_flagged(line):
    assert unpinned_requirements(f"ok==1.0\n{line}\n") == [f"line 2 {line!r} is not an exact '==' pin"]


def test_comments_blank_lines_and_index_options_are_accepted():
    text = ("# a comment\n\n   \n--extra-index-url https://download.pytorch.org/whl/cu121\n"
            "--index-url https://pypi.org/simple\n"
            "torch==2.13.0+cu121  # CUDA build\nPyYAML==6.0.4\n")
    assert unpinned_requirements(text) == []


def test_a_comment_does_not_hide_an_unpinned_requirement():
    assert unpinned_requirements("numpy  # ==2.0 later\n") == ["line 1 'numpy' is not an exact '==' pin"]


# -- GenerationDefaults.updated --------------------------------------------------------------------------

def test_updated_applies_overrides_with_the_right_types():
    d = _defaults(guidance_scale=1.0)
    new = d.updated({"height": "32", "num_frames": 9, "guidance_scale": "4.5"})
    assert (new.height, new.num_frames, new.guidance_scale) == (32, 9, 4.5)
    assert type(new.height) is int and type(new.guidance_scale) is float
    assert (new.width, new.steps) == (d.width, d.steps)
    assert d.height == 16  # the original is untouched


@pytest.mark.parametrize("overrides", [None, {}])
def test_updated_without_overrides_is_unchanged(overrides):
    d = _defaults()
    assert d.updated(overrides) == d


def test_updated_refuses_an_unknown_key_naming_it_and_the_known_ones():
    with pytest.raises(SpecError, match=r"generation setting 'fps' is unknown; known: height, width, .*guidance_scale"):
        _defaults().updated({"height": 32, "fps": 8})


def test_updated_refuses_a_non_numeric_value_naming_the_key():
    with pytest.raises(SpecError, match="'height'"):
        _defaults().updated({"height": "tall"})


# -- WMSpec data round trip ----------------------------------------------------------------------------

def test_wmspec_to_dict_from_dict_round_trip_through_json():
    spec = _spec("full", category="FTtext", base="wan21", finetune="lora", tasks=("navigation", "manipulation"),
                 env="envs/x.txt", expected_failures={"test_batch": "fp16 kernels"}, max_batch=4,
                 tolerances=Tolerances(batch_max_abs=3.0, batch_mean_abs=0.1, determinism_max_abs=1.0),
                 notes="n", defaults=_defaults(guidance_scale=5.0))
    d = spec.to_dict()
    assert d["tasks"] == ["navigation", "manipulation"]
    assert d["defaults"]["guidance_scale"] == 5.0
    back = WMSpec.from_dict(json.loads(json.dumps(d)))
    assert back == spec
    assert isinstance(back.defaults, GenerationDefaults) and isinstance(back.tolerances, Tolerances)


def test_wmspec_round_trip_without_defaults():
    spec = _spec("bare", wrapper=None, defaults=None, unavailable="why")
    assert WMSpec.from_dict(spec.to_dict()) == spec


def test_every_registered_spec_round_trips(clean_registry):
    for spec in load_registry().values():
        assert WMSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec, spec.name


# -- listing and the console script ------------------------------------------------------------------

def test_registry_table_lists_every_type_with_its_runnability(clean_registry):
    table = registry_table()
    lines = table.splitlines()
    for spec in load_registry().values():
        row = next((ln for ln in lines if ln.split()[:1] == [spec.name]), None)
        assert row is not None, f"{spec.name} missing from the table"
        assert spec.category in row.split()
        if spec.runnable:
            assert row.endswith("yes"), row
        else:
            assert row.endswith(f"no: {spec.unavailable}"), row
    n_runnable = sum(s.runnable for s in load_registry().values())
    assert f"19 wm_types registered ({n_runnable} runnable here)" in table


def test_pytest_wiw_list_command_shows_all_19_types():
    exe = Path(sys.executable).parent / "pytest-wiw"
    proc = subprocess.run([str(exe), "list"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first_cells = {ln.split()[0] for ln in proc.stdout.splitlines() if ln.strip()}
    assert set(WIW_TYPES) <= first_cells
    assert "19 wm_types registered" in proc.stdout
