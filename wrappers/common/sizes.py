"""Generation sizes a pipeline can take: refused when they cannot work, rounded (and noted) where the pipeline
would round them anyway."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_wiw.api import GenerationDefaults, SpecError


def require_size_multiple(wm_name: str, generation: GenerationDefaults, multiple: int) -> None:
    """SpecError unless the generation height and width are multiples of ``multiple``."""
    if generation.height % multiple or generation.width % multiple:
        raise SpecError(f"{wm_name} generates at sizes divisible by {multiple}, got "
                        f"{generation.height}x{generation.width}: fix the card's or --wm-opt generation sizes")


@dataclass(frozen=True)
class PipelineSizes:
    """The height, width and frame count a pipeline call uses."""

    height: int
    width: int
    num_frames: int


def round_down(value: int, multiple: int) -> int:
    """``value`` rounded down to a multiple of ``multiple``, at least ``multiple``."""
    return max(value // multiple * multiple, multiple)


def pipeline_sizes(generation: GenerationDefaults, *, multiple: tuple[int, int], num_frames: int, temporal: int,
                   model: str, notes: list[str]) -> PipelineSizes:
    """The generation's height and width rounded down to ``multiple`` (height, width), and ``num_frames`` (the
    frame count the pipeline generates, ``temporal``k+1, as the caller computed it for its pipeline).

    What changed is added to ``notes`` once (the report says what ran), naming ``model``.
    """
    g = generation
    mh, mw = multiple
    height, width = round_down(g.height, mh), round_down(g.width, mw)
    said = []
    if (height, width) != (g.height, g.width):
        said.append(f"generation size {g.height}x{g.width} rounded down to {height}x{width} ({model} takes "
                    f"multiples of {mh if mh == mw else f'{mh}x{mw}'})")
    if num_frames != g.num_frames:
        said.append(f"num_frames {g.num_frames} rounded {'down' if num_frames < g.num_frames else 'up'} to "
                    f"{num_frames} ({model} generates {temporal}k+1 frames)")
    notes.extend(n for n in said if n not in notes)
    return PipelineSizes(height, width, num_frames)
