"""OME-NGFF metadata: ``multiscales`` read (0.4 and 0.5) and written (0.5), and label images.

Written to the specification (https://ngff.openmicroscopy.org/0.5/): under the ``ome`` key
of the group attributes, one multiscale with named, typed axes (``c`` channel; ``z y x``
space with a unit) and a scale transform per level giving the voxel size.
"""

from __future__ import annotations

from typing import Any

from unet_core.formats import VolumeInfo

NGFF_VERSION = "0.5"
#: unet-core's short units <-> the NGFF (UDUNITS-2) names.
UNITS = {"um": "micrometer", "nm": "nanometer", "mm": "millimeter", "m": "meter"}
SHORT_UNITS = {v: k for k, v in UNITS.items()}


def ngff_metadata(attrs: dict[str, Any]) -> dict[str, Any]:
    """The NGFF part of a group's attributes (0.5: under ``ome``; 0.4: at the top)."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) else attrs


def read_multiscales(attrs: dict[str, Any], level: int = 0) -> VolumeInfo | None:
    """Axes and voxel size (Z,Y,X) of ``level`` of the first multiscale, None if absent."""
    multiscales = ngff_metadata(attrs).get("multiscales")
    if not multiscales:
        return None
    first = multiscales[0]
    axes = [a if isinstance(a, dict) else {"name": a} for a in first.get("axes", [])]
    names = "".join(str(a.get("name", "?"))[0] for a in axes).upper()
    datasets = first.get("datasets") or []
    scale = _scale(datasets[level] if level < len(datasets) else {})
    top = _scale(first)
    if scale is not None and top is not None and len(top) == len(scale):
        scale = [s * t for s, t in zip(scale, top)]
    spatial = [
        i
        for i, a in enumerate(axes)
        if a.get("type") == "space" or a.get("name") in ("z", "y", "x")
    ]
    voxel = None
    if scale is not None and len(spatial) >= 3 and len(scale) == len(axes):
        z, y, x = (float(scale[i]) for i in spatial[-3:])
        voxel = (z, y, x)
    unit = next((a.get("unit") for a in axes if a.get("unit")), "micrometer")
    return VolumeInfo(voxel, SHORT_UNITS.get(str(unit), str(unit)), names or None)


def _scale(holder: dict[str, Any]) -> list[float] | None:
    for transform in holder.get("coordinateTransformations") or []:
        if transform.get("type") == "scale" and "scale" in transform:
            return [float(v) for v in transform["scale"]]
    return None


def _axes(ndim: int, unit: str) -> list[dict[str, str]]:
    space = [{"name": n, "type": "space", "unit": UNITS.get(unit, unit)} for n in "zyx"]
    return ([{"name": "c", "type": "channel"}] if ndim == 4 else []) + space[-min(ndim, 3) :]


def multiscales_attrs(
    name: str, path: str, shape: tuple[int, ...], info: VolumeInfo
) -> dict[str, Any]:
    """Group attributes making ``path`` the one level of an image called ``name``."""
    voxel = list(info.voxel_size or (1.0, 1.0, 1.0))
    scale = ([1.0] if len(shape) == 4 else []) + voxel[-min(len(shape), 3) :]
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [
                {
                    "name": name,
                    "axes": _axes(len(shape), info.unit),
                    "datasets": [
                        {
                            "path": path,
                            "coordinateTransformations": [{"type": "scale", "scale": scale}],
                        }
                    ],
                }
            ],
        }
    }


def add_level(attrs: dict[str, Any], path: str, factors: tuple[int, ...]) -> dict[str, Any]:
    """``attrs`` with one more (coarser) level at ``path``: the full level's scale times
    ``factors`` (one per axis)."""
    multiscale = attrs["ome"]["multiscales"][0]
    base = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    scale = [float(s) * f for s, f in zip(base, factors)]
    multiscale["datasets"].append(
        {"path": path, "coordinateTransformations": [{"type": "scale", "scale": scale}]}
    )
    return attrs


def label_group_attrs(name: str, shape: tuple[int, ...], info: VolumeInfo) -> dict[str, Any]:
    """Attributes of ``labels/<name>``: a one-level image marked as a label image of the root."""
    attrs = multiscales_attrs(name, "0", shape, info)
    attrs["ome"]["image-label"] = {"version": NGFF_VERSION, "source": {"image": "../../"}}
    return attrs


def labels_list_attrs(names: list[str]) -> dict[str, Any]:
    """Attributes of the ``labels`` group: which label images exist."""
    return {"ome": {"version": NGFF_VERSION, "labels": list(names)}}
