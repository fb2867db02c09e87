"""The embedded default datasets: realistic multimodal scenes generated from a seed.

``synthetic`` (80 x 80, HSI 32 bands + LiDAR DSM, 8 urban classes) is the default
dataset of ``bench run``; ``synthetic-augsburg`` has the exact shape of the Augsburg
scene (332 x 485, HSI 180 bands + SAR 4 bands, Augsburg's 7 classes) for performance
work. Nothing is downloaded; the same seed always gives the same arrays.

How a scene is made (:func:`make_synthetic_scene`):

1. **Layout.** A domain-warped Voronoi partition gives spatially coherent regions
   (fields, forests, districts); rivers are meandering bands, roads straight strips,
   buildings rectangles on lots inside "urban parcel" regions. Cells are dealt to the
   region classes by area quota (``class_areas="quota"``), so that every seed gets about
   the same class areas. Region pixels at class boundaries and a share of whole regions
   stay unlabelled, as in hand-drawn ground truth.
2. **Context classes.** Some classes are made of items that look like other classes'
   pixels, and only their arrangement tells them apart (``ClassModel.items``): an
   *orchard* is grass with a rotated regular grid of tree crowns (spacing 5-6.5 px,
   crowns of 9-13 px, a few missing), a *parking* lot is road asphalt with double rows of
   stalls (3 x 5 px) facing aisles (4-6 px), three quarters of them holding a car (2 x 4 px);
   roads carry a few cars too. A crown pixel is a tree pixel and a car is a car in every
   modality, so a per-pixel classifier cannot separate orchard from grass and tree, nor
   parking from road; a window of 7 px or more sees the arrangement.
3. **HSI.** Smooth endmember reflectance curves over 400-2500 nm (vegetation with its
   red edge and water absorptions, soil, asphalt, concrete, roof tile, metal, water,
   shadow) are linearly mixed with the abundances of each pixel's appearance (its class,
   or its item). Within-class variability comes from per-object and per-pixel abundance
   perturbations and a per-pixel brightness scaling; a small spatial blur (sensor PSF)
   mixes boundary pixels; band-dependent Gaussian noise (stronger in the atmospheric
   absorption bands) is added.
4. **X modality.** A LiDAR DSM (terrain + object heights, canopy roughness and gaps,
   sensor noise) or 4-band SAR backscatter (VV/VH/HH/HV means, per-region texture,
   multiplicative gamma speckle, stored in dB).
5. **Complementarity.** Some classes differ only in the X modality (two roof classes
   of one material and different heights; Residential vs Commercial and Low plants vs
   Allotment share their spectra but not their backscatter) and others only in the
   HSI (grass, road and water are all flat), so neither modality alone reaches the
   fused accuracy.
6. **Official split.** A few compact training blobs per class (about 5 % of the
   labelled pixels), every other labelled pixel in test.

Every modality is normalised per band to [0, 1] (min-max over the scene), float32. The
scene's difficulty budget (share of context-class pixels, the per-pixel OA ceiling) is
in ``metadata["difficulty"]`` (see :func:`.generator._difficulty` and docs/protocols.md).
"""

from __future__ import annotations

from collections.abc import Callable

from bench_core import DatasetContext, DatasetSpec, Scene, hookimpl
from bench_plugins.datasets.synthetic.generator import make_synthetic_scene
from bench_plugins.datasets.synthetic.materials import (
    AUGSBURG_CLASSES,
    CLASS_MODELS,
    MATERIALS,
    PART_MODELS,
    PRESETS,
    SYNTHETIC_CLASSES,
    ClassModel,
    endmember_spectra,
)

__all__ = [
    "AUGSBURG_CLASSES",
    "CLASS_MODELS",
    "MATERIALS",
    "PART_MODELS",
    "PRESETS",
    "SYNTHETIC_CLASSES",
    "ClassModel",
    "bench_register_datasets",
    "endmember_spectra",
    "make_synthetic_scene",
]


# ----------------------------------------------------------------------------- registration


def _loader(preset: str) -> Callable[[DatasetContext], Scene]:
    def load(context: DatasetContext) -> Scene:
        del context  # generated: no files to read or cache
        return make_synthetic_scene(name=preset, **PRESETS[preset])

    return load


def _preset_spec(preset: str, description: str) -> DatasetSpec:
    """The spec of one :data:`PRESETS` entry: its name, shape, modalities and classes are the preset's."""
    options = PRESETS[preset]
    return DatasetSpec(
        name=preset,
        load=_loader(preset),
        modalities=("hsi", options["aux"]),
        class_names=options["classes"],
        shape=(options["height"], options["width"]),
        description=description,
        recommended_profile="fast",
        paper="",
        url="",  # generated in-process: no source to point at
        licence="CC0-1.0 (generated)",
    )


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``synthetic`` (the default) and ``synthetic-augsburg``."""
    register(_preset_spec(
        "synthetic",
        "Generated 80x80 urban scene, HSI 32 bands + LiDAR DSM, 8 classes; linear spectral "
        "mixing over coherent regions; roof classes differ only in height, orchard and parking "
        "only in the arrangement of tree crowns and cars (per pixel they look like grass, tree "
        "and road). The embedded default.",
    ))
    register(_preset_spec(
        "synthetic-augsburg",
        "Generated scene of Augsburg's shape (332x485, HSI 180 bands + SAR 4 bands with gamma "
        "speckle, Augsburg's 7 classes) for performance work; no download.",
    ))
