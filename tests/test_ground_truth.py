"""Closer to ground truth (#14): reference episodes, the importer of WIW's Habitat collection, the statistics,
and real plugin runs of the tiny FTwan21 against ground truth that is its own output, its base's, or noise."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import numpy as np
import pytest
from conftest import make_checks_dir, run_checks
from PIL import Image

from pytest_wiw.api.registry import get_spec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.checks import ground_truth as gt
from pytest_wiw.errors import UsageError
from pytest_wiw.reference.episodes import EpisodeError, episode_folders, load_episode, write_episode
from pytest_wiw.reference.equirect import perspective_view
from pytest_wiw.report.writer import SCHEMA_PATH
from pytest_wiw.session.pool import PoolSettings, WorkerPool

CHECK = "test_closer_to_ground_truth[FTwan21]"
EPISODES = 4
# The tiny FTwan21's generation settings (wrappers/wan.py TINY_GENERATION): 4 frames of 32x48.
TINY_HW, TINY_FRAMES = (32, 48), 4
ACTION_ROWS = ([4, 1, 1, 2], [4, 3, 3, 1], [4, 1, 2, 1, 3], [4, 2, 2])


# -- the statistics ------------------------------------------------------------------------------------
def test_bootstrap_interval_is_fixed_and_covers_the_mean():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    lo, hi = gt.bootstrap_interval(values)
    assert gt.bootstrap_interval(values) == (lo, hi)  # a fixed seed: the same scores, the same interval
    assert 1.0 < lo < 3.0 < hi < 5.0
    assert gt.bootstrap_interval([2.0] * 6) == (2.0, 2.0)


def score(name, psnr_ft, psnr_zero, ssim_ft=0.5, ssim_zero=0.5):
    return gt.EpisodeScore(name, [psnr_ft], [psnr_zero], [ssim_ft], [ssim_zero])


def test_judge_fails_only_when_the_whole_interval_is_below_minus_the_margin():
    better = gt.judge([score(f"e{i}", 30 + i, 20) for i in range(5)], {"psnr": 0.0, "ssim": 0.0})
    assert not better.worse and better.summaries["psnr"].win_rate == 1.0
    assert better.summaries["psnr"].mean_improvement == pytest.approx(12.0)
    worse = gt.judge([score(f"e{i}", 20, 21 + i) for i in range(5)], {"psnr": 0.0, "ssim": 0.0})
    assert worse.worse == ["psnr"] and worse.summaries["psnr"].win_rate == 0.0
    message = worse.failure("FTx", "x")
    assert "PSNR -3.000 dB (95% interval [" in message and "FT wins 0/5" in message
    tolerated = gt.judge([score(f"e{i}", 20, 21 + i) for i in range(5)], {"psnr": 10.0, "ssim": 0.0})
    assert not tolerated.worse  # a 3 dB loss within a 10 dB margin passes


def test_judge_calls_evidence_weak_when_few_episodes_or_the_interval_includes_zero():
    few = gt.judge([score("a", 30, 20), score("b", 31, 20)], {})
    assert not few.worse and "only 2 episode(s)" in few.describe()
    mixed = gt.judge([score(f"e{i}", 20 + (-1) ** i, 20) for i in range(6)], {})
    assert "the PSNR interval includes zero" in mixed.describe()
    assert "the SSIM interval includes zero" in mixed.describe()  # every SSIM improvement is 0


def test_scores_cap_identical_frames_and_use_ssim():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 3, 32, 48), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 3, 32, 48), dtype=np.uint8)
    assert gt.psnr_per_frame(a, a) == [gt.PSNR_IDENTICAL_DB] * 3
    assert all(7 < v < 9 for v in gt.psnr_per_frame(a, b))  # two uniform noise images: about 7.8 dB
    assert gt.ssim_per_frame(a, a) == pytest.approx([1.0] * 3)
    assert all(abs(v) < 0.1 for v in gt.ssim_per_frame(a, b))


def test_ground_truth_is_mapped_like_a_wrapper_output():
    """A 7-frame 64x96 ground truth becomes 4 frames of 32x48 by finish_video's own mapping."""
    import torch

    from pytest_wiw.api.worldmodel import map_video

    frames = np.random.default_rng(1).integers(0, 256, (7, 3, 64, 96), dtype=np.uint8)
    mapped = gt.map_ground_truth(frames, TINY_FRAMES, TINY_HW)
    assert mapped.shape == (TINY_FRAMES, 3, *TINY_HW) and mapped.dtype == np.uint8
    expected = map_video(torch.from_numpy(frames).float()[None] / 255.0, TINY_FRAMES, TINY_HW)[0]
    np.testing.assert_array_equal(mapped, expected)
    np.testing.assert_array_equal(gt.map_ground_truth(mapped, TINY_FRAMES, TINY_HW), mapped)  # same size: as is


@pytest.mark.parametrize("value, expected", [("0", {"psnr": 0.0, "ssim": 0.0}), ("0.5", {"psnr": 0.5, "ssim": 0.5}),
                                             ("psnr=1,ssim=0.01", {"psnr": 1.0, "ssim": 0.01})])
def test_margins_parse(value, expected):
    assert gt.parse_margins(value) == expected


@pytest.mark.parametrize("value", ["lpips=1", "psnr=x", "-1", "nan"])
def test_bad_margins_are_usage_errors(value):
    with pytest.raises(UsageError, match="--wm-reference-margin"):
        gt.parse_margins(value)


# -- the episode layout ---------------------------------------------------------------------------------
def test_episode_round_trip_and_errors_name_the_file(tmp_path):
    rng = np.random.default_rng(2)
    start, frames = rng.integers(0, 256, (3, 16, 24), dtype=np.uint8), rng.integers(0, 256, (5, 3, 16, 24), dtype=np.uint8)
    write_episode(tmp_path / "ep", task_type="navigation", actions=[4, 1, 2], start=start, frames=frames)
    episode = load_episode(tmp_path / "ep")
    np.testing.assert_array_equal(episode.start, start)
    np.testing.assert_array_equal(episode.frames, frames)
    assert (episode.task_type, episode.actions) == ("navigation", [4, 1, 2])
    meta = json.loads((tmp_path / "ep" / "episode.json").read_text())
    (tmp_path / "ep" / "episode.json").write_text(json.dumps({**meta, "actions": [4, 9]}))
    with pytest.raises(EpisodeError, match=r"episode\.json: actions\[0\]: unknown action id 9"):
        load_episode(tmp_path / "ep")
    (tmp_path / "ep" / "episode.json").write_text(json.dumps(meta))
    (tmp_path / "ep" / "frames" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(EpisodeError, match=r"0001\.png: not a readable image"):
        load_episode(tmp_path / "ep")
    with pytest.raises(EpisodeError, match="no episode in it"):
        episode_folders(tmp_path / "ep")


# -- the importer -------------------------------------------------------------------------------------------
def stripe_panorama(height: int, longitude_deg: float) -> np.ndarray:
    """A dark equirectangular panorama (2H x H) with one bright vertical stripe at ``longitude_deg``."""
    pano = np.full((3, height, 2 * height), 20, dtype=np.uint8)
    col = int(round((longitude_deg / 360 + 0.5) * 2 * height))
    pano[:, :, col - 1 : col + 2] = 250
    return pano


def test_perspective_view_looks_along_the_heading_with_left_on_the_left():
    pano = stripe_panorama(64, 40.0)  # a stripe 40 degrees to the right of the heading
    ahead = perspective_view(pano, (32, 32), hfov_deg=90)
    right_half = ahead[:, :, 16:].mean()
    assert right_half > ahead[:, :, :16].mean() + 20  # seen on the right, near the edge (tan 40 / tan 45)
    assert int(np.argmax(ahead[0, 16])) == pytest.approx(16 + 16 * np.tan(np.radians(40)), abs=1.5)
    turned = perspective_view(pano, (32, 32), hfov_deg=90, yaw_deg=40)
    assert abs(int(np.argmax(turned[0, 16])) - 15.5) <= 1.5  # looking at it: the centre column
    assert perspective_view(stripe_panorama(64, -40.0), (32, 32))[:, :, :16].mean() > right_half - 5


def write_habitat_tree(root, steps: int, missing: tuple[int, ...] = (), size: int = 32) -> list[int]:
    """A waypoint folder as WIW's collector writes it: metadata.json plus step-N_type-rgb.png panoramas."""
    folder = root / "00800-TEEsavR23oF.basis.glb" / "traj-0" / "waypoint-2"
    folder.mkdir(parents=True)
    actions = [1, 1, 2, 3, 1, 2, 1, 1, 3][:steps]
    records = {f"step-{j}": {"action": a, "coord": [[0.1 * j, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
                             "habitat_camera_coord": [[0.1 * j, 1.5, 0.0], [1.0, 0.0, 0.0, 0.0]]}
               for j, a in enumerate(actions)}
    meta = {"scene-00800-TEEsavR23oF.basis.glb": {"traj-0": {"trajPoints": [[0, 0, 0], [1, 0, 1]],
                                                              "steps": {"waypoint-2": records}}}}
    (folder / "metadata.json").write_text(json.dumps(meta, indent=4))
    for j in range(steps):
        if j not in missing:
            pano = stripe_panorama(size, -90 + 20 * j)
            Image.fromarray(pano.transpose(1, 2, 0)).save(folder / f"step-{j}_type-rgb.png")
    return actions


def import_cli(run_env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_wiw.cli", "import-habitat", *map(str, args)], env=run_env,
                          capture_output=True, text=True, timeout=300)


def test_import_habitat_writes_episodes_the_check_reads(run_env, tmp_path):
    actions = write_habitat_tree(tmp_path / "collect", steps=9, missing=(4,))
    out = tmp_path / "episodes"
    proc = import_cli(run_env, tmp_path / "collect", out, "--frames", 3, "--stride", 2, "--view-size", "32x48")
    assert proc.returncode == 0, proc.stderr
    # steps 0-3 and 5-8 are two runs (frame 4 is missing); 3-frame windows every 2 steps fit once in each
    names = [p.name for p in episode_folders(out)]
    assert names == ["00800-TEEsavR23oF.basis.glb--traj-0--waypoint-2--step-0",
                     "00800-TEEsavR23oF.basis.glb--traj-0--waypoint-2--step-5"], names
    episode = load_episode(out / names[1])
    assert episode.task_type == "navigation" and episode.actions == [4, actions[6], actions[7]]
    assert episode.frames.shape == (3, 3, 32, 48)
    source_pano = np.asarray(Image.open(tmp_path / "collect" / "00800-TEEsavR23oF.basis.glb" / "traj-0" /
                                        "waypoint-2" / "step-6_type-rgb.png")).transpose(2, 0, 1)
    np.testing.assert_array_equal(episode.frames[1], perspective_view(source_pano, (32, 48), 90.0))
    np.testing.assert_array_equal(episode.start, episode.frames[0])
    assert "wrote 2 episode(s)" in proc.stdout
    again = import_cli(run_env, tmp_path / "collect", out)
    assert again.returncode == 2 and "is not empty" in again.stderr


def test_import_habitat_errors_name_the_file(run_env, tmp_path):
    write_habitat_tree(tmp_path / "collect", steps=3)
    meta = next((tmp_path / "collect").rglob("metadata.json"))
    meta.write_text("{not json")
    proc = import_cli(run_env, tmp_path / "collect", tmp_path / "out")
    assert proc.returncode == 2 and "metadata.json: not readable JSON" in proc.stderr
    proc = import_cli(run_env, tmp_path / "nothing-here", tmp_path / "out2")
    assert proc.returncode == 2 and "not a folder" in proc.stderr


# -- real plugin runs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_outputs(tiny_cache):
    """The tiny FTwan21's FT and zero-shot outputs for EPISODES start images, at the seed a plugin run uses (0),
    made by a worker of the project's own pool, as the plugin's worker makes them."""
    pool = WorkerPool(PoolSettings(device="cpu", tiny_cache=str(tiny_cache), load_timeout=600, request_timeout=600))
    try:
        handle = pool.get(get_spec("FTwan21"), get_spec("wan21"), None, None)
        assert handle.ready is not None, handle.failure
        rng = np.random.default_rng(14)
        out = []
        for i in range(EPISODES):
            y, x = np.mgrid[0 : TINY_HW[0], 0 : TINY_HW[1]]
            start = np.stack([x * 5 + 10 * i, y * 7, (x + y) * 3]).clip(0, 255).astype(np.uint8)
            start[:, rng.integers(0, 16) :][:, :8, :8] = rng.integers(0, 256, (3, 1, 1))
            request = GenerationRequest(images=start[None], actions=[ACTION_ROWS[i]], task_type="navigation", seed=0,
                                        request_model_name="FTwan21")
            ft, _ = handle.generate(request, "ft")
            zero, _ = handle.generate(request, "zero_shot")
            out.append((start, ACTION_ROWS[i], ft[0], zero[0]))
        return out
    finally:
        pool.close_all()


def write_reference(folder, outputs, which: str):
    """Reference episodes whose ground truth is the FT output, the zero-shot output, or noise."""
    rng = np.random.default_rng(7)
    for i, (start, actions, ft, zero) in enumerate(outputs):
        frames = {"ft": ft, "zero": zero, "noise": rng.integers(0, 256, ft.shape, dtype=np.uint8)}[which]
        write_episode(folder / f"ep-{i}", task_type="navigation", actions=actions, start=start, frames=frames)
    return folder


def run_gt(tmp_path, run_env, reference, *extra):
    workdir = make_checks_dir(tmp_path / "run")
    return run_checks(workdir, run_env, "--wm", "FTwan21", f"--wm-reference={reference}", *extra)


def test_ground_truth_from_the_ft_passes_with_every_episode_won(tmp_path, run_env, tiny_outputs):
    reference = write_reference(tmp_path / "ref", tiny_outputs, "ft")
    report = tmp_path / "report"
    cache = tmp_path / "baselines"
    run = run_gt(tmp_path, run_env, reference, f"--wm-report={report}", f"--wm-baseline-cache={cache}")
    check = run[CHECK]
    assert check.outcome == "passed", run.output[-3000:]
    props = check.properties
    assert float(props["ground_truth_psnr_improvement"]) > 0 and float(props["ground_truth_ssim_improvement"]) > 0
    assert float(props["ground_truth_psnr_win_rate"]) == 1.0 and float(props["ground_truth_ssim_win_rate"]) == 1.0
    assert float(props["ground_truth_psnr_ci_low"]) > 0
    assert props["ground_truth_episodes"] == str(EPISODES) and "FT wins 4/4" in props["summary"]
    # the cost: two generations per episode, apart from the floor's four, in the summary and the report
    assert f"FTwan21: 1 load(s), 4 generation call(s), 3 property example(s), {2 * EPISODES} reference" in run.output
    assert "FTwan21: closer to ground truth: 4 episode(s): PSNR +" in run.output
    data = json.loads((report / "FTwan21.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["figures"]["generations"] == 4 and data["figures"]["reference_generations"] == 2 * EPISODES
    entry = next(c for c in data["checks"] if c["name"] == "closer to ground truth")
    assert entry["outcome"] == "passed" and entry["message"].startswith("4 episode(s): PSNR +")
    assert [e["winner"] for e in data["ground_truth"]["episodes"]] == ["FT"] * EPISODES
    assert data["ground_truth"]["episodes"][0]["psnr_ft"] == gt.PSNR_IDENTICAL_DB
    md = (report / "report.md").read_text()
    assert "## Closer to ground truth: FTwan21" in md and "| episode | PSNR FT | PSNR zero-shot | winner |" in md
    assert "| ep-0 | 100.000 |" in md
    # the contact sheet gains three rows (ground truth, zero-shot and FT with a PSNR caption under each frame)
    assert Image.open(report / "FTwan21.png").height > 6 * 96
    # a second run reads the zero-shot outputs from the baseline cache: one generation per episode
    again = run_gt(tmp_path / "again", run_env, reference, f"--wm-baseline-cache={cache}")
    assert again[CHECK].outcome == "passed"
    assert f"3 generation call(s), 3 property example(s), {EPISODES} reference generation(s)" in again.output


def test_ground_truth_from_the_base_fails_naming_the_metric_and_interval(tmp_path, run_env, tiny_outputs):
    reference = write_reference(tmp_path / "ref", tiny_outputs, "zero")
    run = run_gt(tmp_path, run_env, reference, "-k", "closer_to_ground_truth")
    check = run[CHECK]
    assert check.outcome == "failed", run.output[-3000:]
    assert "FTwan21 is further from the ground truth than its zero-shot base wan21: PSNR -" in check.message
    assert "(95% interval [-" in check.message and "FT wins 0/4" in check.message
    assert "FTwan21 / closer to ground truth: FTwan21 is further" in run.output  # a root cause line


def test_noise_ground_truth_never_crashes_and_says_the_evidence_is_weak(tmp_path, run_env, tiny_outputs):
    reference = write_reference(tmp_path / "ref", tiny_outputs, "noise")
    run = run_gt(tmp_path, run_env, reference, "-k", "closer_to_ground_truth")
    check = run[CHECK]
    assert check.outcome in ("passed", "failed"), run.output[-3000:]
    assert "Weak evidence" in check.properties["summary"] and "interval includes zero" in check.properties["summary"]


def test_without_a_reference_the_check_skips_saying_how_to_enable_it(tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21", "-k", "closer_to_ground_truth")
    check = run[CHECK]
    assert check.outcome == "skipped" and "--wm-reference=DIR" in check.message


def test_imported_habitat_episodes_run_through_the_check(tmp_path, run_env):
    write_habitat_tree(tmp_path / "collect", steps=9)
    out = tmp_path / "episodes"
    proc = import_cli(run_env, tmp_path / "collect", out, "--frames", 4, "--stride", 1, "--view-size", "32x48")
    assert proc.returncode == 0, proc.stderr
    run = run_gt(tmp_path, run_env, out, "-k", "closer_to_ground_truth", "--wm-reference-episodes=3")
    check = run[CHECK]
    assert check.outcome in ("passed", "failed"), run.output[-3000:]
    assert check.properties["ground_truth_episodes"] == "3"
    assert "3 episode(s)" in check.properties["summary"] and "only 3 episode(s)" in check.properties["summary"]


def test_a_missing_reference_folder_is_a_usage_error(tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21",
                     f"--wm-reference={tmp_path / 'nowhere'}", "--wm-reference-margin=lpips=1")
    assert run.returncode == 4 and "--wm-reference" in run.output and "not a folder" in run.output
