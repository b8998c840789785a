"""Experiment configuration: schema, YAML loading with line numbers, overrides, export."""

from unet_core.config.loading import as_config, config_from_dict, load_config
from unet_core.config.refs import ComponentRef, RefOf
from unet_core.config.schema import (
    ExperimentConfig,
    LoadersConfig,
    PhaseConfig,
    TrainerConfig,
    block_shape,
)
from unet_core.config.sections import phase_section
from unet_core.config.shapes import ShapeZYX, VoxelSizeZYX, three_values, zyx

__all__ = [
    "block_shape",
    "ShapeZYX",
    "VoxelSizeZYX",
    "three_values",
    "zyx",
    "ComponentRef",
    "RefOf",
    "ExperimentConfig",
    "LoadersConfig",
    "PhaseConfig",
    "TrainerConfig",
    "as_config",
    "config_from_dict",
    "load_config",
    "phase_section",
]
