"""What the wrappers share, one job a module; a third-party wrapper may use them too.

- ``loading``: every ``from_pretrained`` and safetensors read of a checkpoint (``load_pretrained``,
  ``load_pipeline``, ``read_safetensors``), with one set of caught errors: a folder that does not load is a
  CheckpointError naming the folder, the class and the cause.
- ``tiny``: every ``make_tiny`` writes its checkpoint through ``save_tiny`` (built under ``fork_rng``,
  saved in its real layout, with its card); ``TinyPipeline`` is the ``make_tiny`` of a wrapper whose tiny
  checkpoint is one pipeline folder, ``tiny_generation`` the settings the tiny cards carry.
- ``sizes``: generation sizes refused or rounded as the pipeline needs.
- ``tiny_text``: the tiny offline tokenizer and T5 encoder tiny pipelines share.
- ``component_swap``: an FT type's fine-tuned component swapped into its base pipeline (FTcosmos, FTltx,
  igen, Wan full fine-tunes).
- ``offload``: the idle version of a swapped component in host memory (``--wm-offload``).
"""
