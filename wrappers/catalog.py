"""The WIW roster: registers every wm_type World-in-World evaluates (loaded via the pytest_wiw.wms entry point).

Only names and settings live here; each wrapper module is imported inside its worker process. An FT
type shares its base's generation defaults, so the two are always compared at the same settings.
"""

from pytest_wiw.api import GenerationDefaults, register_wm

DIFFUSERS_ENV = "envs/diffusers-0.42.txt"
ALL_TASKS = ("navigation", "manipulation", "freetext")


def _legacy(script: str, what: str) -> str:
    return (f"{what}; not runnable in-process here: hold WIW's own worker to the checks with "
            f"--wm-worker-cmd \"python downstream/api_models/{script} --ckpt_path ...\"")


SVD = GenerationDefaults(height=576, width=1024, out_height=576, out_width=1024, num_frames=14,
                         num_output_frames=14, steps=25, guidance_scale=3.0)
WAN21 = GenerationDefaults(height=480, width=832, out_height=480, out_width=832, num_frames=33,
                           num_output_frames=14, steps=30, guidance_scale=5.0)
COSMOS2 = GenerationDefaults(height=704, width=1280, out_height=704, out_width=1280, num_frames=33,
                             num_output_frames=14, steps=35, guidance_scale=7.0)
LTX = GenerationDefaults(height=480, width=704, out_height=480, out_width=704, num_frames=41,
                         num_output_frames=14, steps=50, guidance_scale=3.0)
HUNYUAN = GenerationDefaults(height=720, width=1280, out_height=720, out_width=1280, num_frames=33,
                             num_output_frames=14, steps=50, guidance_scale=1.0)
COSMOS25 = GenerationDefaults(height=704, width=1280, out_height=704, out_width=1280, num_frames=33,
                              num_output_frames=14, steps=35, guidance_scale=7.0)
WAN22_5B = GenerationDefaults(height=704, width=1280, out_height=704, out_width=1280, num_frames=41,
                              num_output_frames=14, steps=50, guidance_scale=5.0)
WAN22_A14B = GenerationDefaults(height=480, width=832, out_height=480, out_width=832, num_frames=33,
                                num_output_frames=14, steps=40, guidance_scale=3.5)


def _native(name: str, wrapper: str, defaults: GenerationDefaults, *, category: str = "text",
            tasks=ALL_TASKS, **kwargs) -> None:
    register_wm(name, wrapper=wrapper, category=category, tasks=tasks, defaults=defaults, env=DIFFUSERS_ENV,
                **kwargs)


# -- text: zero-shot image-to-video models -----------------------------------------------------
_native("svd", "wrappers.svd:StableVideoDiffusion", SVD,
        notes="image-only conditioning: actions do not change SVD's output")
_native("wan21", "wrappers.wan:WanImageToVideo", WAN21)
_native("cosmos20", "wrappers.cosmos:Cosmos2VideoToWorld", COSMOS2)
_native("ltx", "wrappers.ltx:LTXImageToVideo", LTX)
_native("hunyuan", "wrappers.hunyuan:HunyuanImageToVideo", HUNYUAN)
_native("cosmos25", "wrappers.cosmos25:Cosmos25Predict", COSMOS25)
_native("wan22", "wrappers.wan22:Wan22TI2V", WAN22_5B)
_native("wan22-14B", "wrappers.wan22_a14b:Wan22A14B", WAN22_A14B,
        notes="zero-shot base of FTwan22-14B (WIW's A14B I2V wrapper plays that part)")
register_wm("nwm", wrapper=None, category="text", tasks=("navigation",),
            unavailable=_legacy("nwm_model.py", "NWM (Navigation World Models) runs its own worker script"))
register_wm("gen4tur", wrapper=None, category="text", tasks=ALL_TASKS,
            unavailable=_legacy("gen4tur_model.py", "Runway Gen-4 Turbo is a remote API"))

# -- FTtext: post-trained variants ---------------------------------------------------------------
_native("FTwan21", "wrappers.wan:WanImageToVideo", WAN21, category="FTtext", base="wan21", finetune="lora")
_native("FTcosmos", "wrappers.cosmos:Cosmos2VideoToWorld", COSMOS2, category="FTtext", base="cosmos20",
        finetune="transformer")
_native("FTltx", "wrappers.ltx:LTXImageToVideo", LTX, category="FTtext", base="ltx", finetune="transformer")
_native("FTwan22", "wrappers.wan22:Wan22TI2V", WAN22_5B, category="FTtext", base="wan22", finetune="lora")
_native("FTwan22-14B", "wrappers.wan22_a14b:Wan22A14B", WAN22_A14B, category="FTtext", base="wan22-14B",
        finetune="lora")

# -- camera, action, simulator -------------------------------------------------------------------
register_wm("se3ds", wrapper=None, category="camera", tasks=("navigation",),
            unavailable=_legacy("se3ds_model.py", "SE3DS is TensorFlow-only"))
register_wm("pathdreamer", wrapper=None, category="camera", tasks=("navigation",),
            unavailable=_legacy("pathdreamer_model.py", "PathDreamer is TensorFlow-only"))
_native("igen", "wrappers.igen:ActionConditionedSVD", SVD, category="action", base="svd", finetune="unet",
        tasks=("navigation", "manipulation"),
        notes="WIW's SVD-dagger: a fine-tuned, action-conditioned UNet on top of svd")
register_wm("GTsim", wrapper=None, category="GTsim", tasks=("navigation", "manipulation"),
            unavailable="ground truth from the simulator itself: it is the reference the world models are "
                        "scored against, not a generative model, so there is nothing to check")
