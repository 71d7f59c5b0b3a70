"""The WIW roster: registers every wm_type World-in-World evaluates (loaded via the pytest_wiw.wms entry point).

Only names and settings live here; each wrapper module is imported inside its worker process.
"""

from pytest_wiw.api import GenerationDefaults, register_wm

DIFFUSERS_ENV = "envs/diffusers-0.42.txt"
ALL_TASKS = ("navigation", "manipulation", "freetext")
PLANNED = "native wrapper not written yet (planned: issue 3, the whole WIW roster)"


def _legacy(script: str, what: str) -> str:
    return (f"{what}; not runnable in-process here: hold WIW's own worker to the checks with "
            f"--wm-worker-cmd \"python downstream/api_models/{script} --ckpt_path ...\" (issue 3)")


# -- text: zero-shot image-to-video models -----------------------------------------------------
register_wm(
    "svd", wrapper="wrappers.svd:StableVideoDiffusion", category="text", tasks=ALL_TASKS,
    defaults=GenerationDefaults(height=576, width=1024, out_height=576, out_width=1024,
                                num_frames=14, num_output_frames=14, steps=25, guidance_scale=3.0),
    env=DIFFUSERS_ENV,
    notes="image-only conditioning: actions do not change SVD's output",
)
register_wm(
    "wan21", wrapper="wrappers.wan:WanImageToVideo", category="text", tasks=ALL_TASKS,
    defaults=GenerationDefaults(height=480, width=832, out_height=480, out_width=832,
                                num_frames=33, num_output_frames=14, steps=30, guidance_scale=5.0),
    env=DIFFUSERS_ENV,
)
register_wm(
    "cosmos20", wrapper="wrappers.cosmos:Cosmos2VideoToWorld", category="text", tasks=ALL_TASKS,
    defaults=GenerationDefaults(height=704, width=1280, out_height=704, out_width=1280,
                                num_frames=33, num_output_frames=14, steps=35, guidance_scale=7.0),
    env=DIFFUSERS_ENV,
)
for name, what in (("ltx", "LTX-Video"), ("hunyuan", "HunyuanVideo I2V"), ("cosmos25", "Cosmos 2.5"),
                   ("wan22", "Wan 2.2 TI2V-5B"), ("wan22-14B", "Wan 2.2 A14B I2V")):
    register_wm(name, wrapper=None, category="text", tasks=ALL_TASKS, unavailable=f"{what}: {PLANNED}")
register_wm("nwm", wrapper=None, category="text", tasks=("navigation",),
            unavailable=_legacy("nwm_model.py", "NWM (Navigation World Models) runs its own worker script"))
register_wm("gen4tur", wrapper=None, category="text", tasks=ALL_TASKS,
            unavailable=_legacy("gen4tur_model.py", "Runway Gen-4 Turbo is a remote API"))

# -- FTtext: post-trained variants ---------------------------------------------------------------
register_wm(
    "FTwan21", wrapper="wrappers.wan:WanImageToVideo", category="FTtext", base="wan21", finetune="lora",
    tasks=ALL_TASKS,
    defaults=GenerationDefaults(height=480, width=832, out_height=480, out_width=832,
                                num_frames=33, num_output_frames=14, steps=30, guidance_scale=5.0),
    env=DIFFUSERS_ENV,
)
register_wm(
    "FTcosmos", wrapper="wrappers.cosmos:Cosmos2VideoToWorld", category="FTtext", base="cosmos20",
    finetune="transformer", tasks=ALL_TASKS,
    defaults=GenerationDefaults(height=704, width=1280, out_height=704, out_width=1280,
                                num_frames=33, num_output_frames=14, steps=35, guidance_scale=7.0),
    env=DIFFUSERS_ENV,
)
for name, base, kind in (("FTltx", "ltx", "transformer"), ("FTwan22", "wan22", "lora"),
                         ("FTwan22-14B", "wan22-14B", "lora")):
    register_wm(name, wrapper=None, category="FTtext", base=base, finetune=kind, tasks=ALL_TASKS,
                unavailable=f"post-trained {base}: {PLANNED}")

# -- camera, action, simulator -------------------------------------------------------------------
register_wm("se3ds", wrapper=None, category="camera", tasks=("navigation",),
            unavailable=_legacy("se3ds_model.py", "SE3DS is TensorFlow-only"))
register_wm("pathdreamer", wrapper=None, category="camera", tasks=("navigation",),
            unavailable=_legacy("pathdreamer_model.py", "PathDreamer is TensorFlow-only"))
register_wm("igen", wrapper=None, category="action", base=None, tasks=("navigation", "manipulation"),
            unavailable=f"action-conditioned SVD (SVD-dagger): {PLANNED}")
register_wm("GTsim", wrapper=None, category="GTsim", tasks=("navigation", "manipulation"),
            unavailable="ground truth from the simulator itself: it is the reference the world models are "
                        "scored against, not a generative model, so there is nothing to check")

