"""``ComponentRef``: a config section validated once, against the component it names.

A section such as ``model: {name: UNet3D, f_maps: 32}`` becomes
``ComponentRef(kind="models", name="UNet3D", config=<UNet3D.Config>)`` when the experiment is
loaded. Engines build from the ref (``registry.create`` takes it as is), so no code below the
loader re-reads a component's parameters from a dict or validates them again. A ref dumps
back to the reference's ``{name: X, ...params}`` form (the keys the user gave), so configs
saved in checkpoints and exported as YAML/JSON keep their shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from unet_core.config.yaml_source import YamlPath

ConfigT = TypeVar("ConfigT", bound=BaseModel, covariant=True)

#: A section as written in YAML: ``{"name": X, ...params}`` (or only the name).
ComponentSpec = Mapping[str, Any] | str


@dataclass(frozen=True)
class ComponentRef(Mapping[str, Any], Generic[ConfigT]):
    """Which component of ``kind`` to build (``name``) and its validated ``config``.

    It is also a read-only mapping in the reference's form (``ref["name"]``, ``{**ref}``), so
    scripts and third-party plugins written against plain ``{name: X, ...}`` sections keep
    working; the engines use ``name`` and ``config``.
    """

    kind: str
    name: str
    config: ConfigT
    #: where the section was written (e.g. ``("loaders", "train", "slice_builder")``)
    location: YamlPath = field(default=(), compare=False)

    @classmethod
    def from_spec(
        cls, kind: str, spec: ComponentSpec, location: YamlPath = ()
    ) -> ComponentRef[BaseModel]:
        """Validate ``spec`` against the named component's ``Config``; raises ConfigError."""
        from unet_core import registry

        name, config = registry.validate(kind, spec)
        return ComponentRef(kind, name, config, tuple(location))

    def params(self, mode: str = "python") -> dict[str, Any]:
        """The parameters the user gave (defaults left out), as plain data."""
        dumped: dict[str, Any] = self.config.model_dump(mode=mode, exclude_unset=True)
        return dumped

    def dump(self, mode: str = "python") -> dict[str, Any]:
        """The reference's ``{name: X, ...params}`` form."""
        return {"name": self.name, **self.params(mode)}

    def with_params(self, **update: object) -> ComponentRef[ConfigT]:
        """A copy whose config has ``update`` applied (values must already be typed)."""
        config = self.config.model_copy(update=update)
        return ComponentRef(self.kind, self.name, config, self.location)

    # -- the read-only mapping view (what the section looked like in YAML) -------------------
    def __getitem__(self, key: str) -> Any:
        return self.dump()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.dump())

    def __len__(self) -> int:
        return len(self.dump())

    @property
    def where(self) -> str:
        """The YAML path as written in messages (``loaders.train.slice_builder``)."""
        return ".".join(str(p) for p in self.location) or self.kind


@dataclass(frozen=True)
class RefOf:
    """Pydantic field metadata: ``Annotated[ComponentRef[Any], RefOf("models")]``.

    A ref passes as is (validated by the loader); a mapping is validated through the
    registry (configs built in Python, a checkpoint's saved config). Dumps as ``{name, ...}``.
    """

    kind: str
    description: str = ""

    def validate(self, value: object, info: core_schema.ValidationInfo) -> ComponentRef[BaseModel]:
        if isinstance(value, ComponentRef):
            if value.kind != self.kind:
                raise ValueError(f"expected a {self.kind} component, got a {value.kind} one")
            return value
        if isinstance(value, str | Mapping):
            from unet_core.errors import UserError

            try:
                return ComponentRef.from_spec(self.kind, value)
            except UserError as exc:
                raise ValueError(exc.message) from None
        raise ValueError(f"expected a mapping with a `name` key, got {value!r}")

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            self.validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize, info_arg=True
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "object", "additionalProperties": True}


def _serialize(ref: ComponentRef[BaseModel], info: core_schema.SerializationInfo) -> dict[str, Any]:
    return ref.dump("json" if info.mode_is_json() else "python")
