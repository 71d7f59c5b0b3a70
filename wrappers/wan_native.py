"""Wan DiT parameter names: original Wan / DiffSynth-Studio names <-> diffusers' ``WanTransformer3DModel`` names.

WIW's full fine-tunes of Wan (DiffSynth-Studio ``--ft_method=full``, loaded by WIW with
``pipe.dit.load_state_dict``) are state dicts of the DiT in the original Wan module names, which
DiffSynth's ``WanModel`` keeps: ``blocks.0.self_attn.q.weight``, ``head.modulation`` ... The renaming
is the one diffusers itself applies when it converts an original Wan checkpoint:
``TRANSFORMER_KEYS_RENAME_DICT`` in diffusers' ``scripts/convert_wan_to_diffusers.py`` (time/text
embeddings -> ``condition_embedder.*``, ``head.head`` -> ``proj_out``, ``modulation`` ->
``scale_shift_table``, ``self_attn``/``cross_attn`` -> ``attn1``/``attn2`` with ``to_q`` ... ``to_out.0``,
``k_img``/``v_img``/``norm_k_img`` -> ``add_k_proj``/``add_v_proj``/``norm_added_k``, ``ffn.0``/``ffn.2`` ->
``ffn.net.0.proj``/``ffn.net.2``, the swap of ``norm2`` and ``norm3``, the I2V image embedder). That
script applies the table as chained substring replacements; here it is written as whole-module rules,
so each name maps both ways and a name no rule covers is reported instead of passed through.
"""

from __future__ import annotations

import re

#: Modules outside the blocks: original name -> diffusers name.
TOP_LEVEL = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
}
#: Modules inside ``blocks.N.``: original name -> diffusers name.
IN_BLOCK = {
    "modulation": "scale_shift_table",
    "norm3": "norm2",  # the original calls its norms in the order norm1, norm3, norm2
    "norm2": "norm3",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    **{f"{ours}.{a}": f"{theirs}.{b}" for ours, theirs in (("self_attn", "attn1"), ("cross_attn", "attn2"))
       for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"), ("norm_q", "norm_q"),
                    ("norm_k", "norm_k"))},
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(name: str, table: dict[str, str]) -> str | None:
    """``name`` with its module renamed by the longest rule of ``table`` that covers it, else None."""
    for module in sorted(table, key=len, reverse=True):
        if name == module or name.startswith(module + "."):
            return table[module] + name[len(module):]
    return None


def to_diffusers(name: str) -> str | None:
    """The diffusers parameter name of an original-Wan / DiffSynth DiT parameter name (None: no rule)."""
    match = _BLOCK.match(name)
    if match:
        inner = _rename(match.group(2), IN_BLOCK)
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return _rename(name, TOP_LEVEL)


def to_native(name: str) -> str | None:
    """The inverse of ``to_diffusers``: a diffusers parameter name in original-Wan / DiffSynth naming."""
    match = _BLOCK.match(name)
    if match:
        inner = _rename(match.group(2), {v: k for k, v in IN_BLOCK.items()})
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return _rename(name, {v: k for k, v in TOP_LEVEL.items()})
