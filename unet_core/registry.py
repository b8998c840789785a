"""The registry: three verbs (``list``, ``get``, ``create``) plus ``register``.

Components come from entry points (see :mod:`unet_core.discovery`) or from
:func:`register` for code that has no package. Names are exact; a wrong one gets the closest
valid names in the error.
"""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import threading
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unet_core import discovery
from unet_core.discovery import Record
from unet_core.errors import ConfigError, PluginError
from unet_core.kinds import KINDS, singular
from unet_core.plugin_import import ImportFailure

if TYPE_CHECKING:
    from typing import TypeAlias

    from pydantic import BaseModel, ValidationError

    from unet_core.interfaces import ValidatedSection

    #: A component section: ``{"name": X, ...}``, ``"X"`` or an already validated ref.
    Spec: TypeAlias = Mapping[str, Any] | str | ValidatedSection


class PluginWarning(UserWarning):
    """A plugin was skipped because it is broken."""


def suggest(word: str, candidates: builtins.list[str]) -> str:
    """' (did you mean `x`?)' for the closest candidates, or ''."""
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:  # a case-only slip: that is the answer
        close = [lowered[word.lower()]]
    else:
        close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(f'`{c}`' for c in close)}?)" if close else ""


class Registry:
    """Records per kind; entry points are read on first use and imported on demand."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Record]] | None = None
        self._lock = threading.RLock()

    # -- discovery -----------------------------------------------------------------------
    def _all(self) -> dict[str, dict[str, Record]]:
        with self._lock:
            if self._records is None:
                self._records = discovery.scan()
            return self._records

    def refresh(self) -> None:
        """Forget what was discovered (e.g. after pip installs a plugin), keeping register()s."""
        with self._lock:
            kept = {
                kind: {n: r for n, r in recs.items() if r.target == "<registered>"}
                for kind, recs in (self._records or {}).items()
            }
            self._records = discovery.scan()
            for kind, recs in kept.items():
                self._records[kind].update(recs)

    def _kind(self, kind: str) -> dict[str, Record]:
        if kind not in KINDS:
            raise PluginError(
                f"Unknown component kind {kind!r}; expected one of {', '.join(KINDS)}"
                f"{suggest(kind, builtins.list(KINDS))}."
            )
        return self._all()[kind]

    # -- public verbs ----------------------------------------------------------------------
    def register(
        self, kind: str, name: str | None = None, obj: Any = None, *, replace: bool = False
    ) -> Any:
        """Register ``obj`` under ``kind``/``name``; usable as ``@register("losses")``."""
        if obj is None:
            return lambda o: self.register(kind, name, o, replace=replace)
        name = name or getattr(obj, "name", None) or obj.__name__
        problem = discovery.config_problem(obj) or discovery.contract_problem(kind, obj)
        if problem is not None:
            raise PluginError(f"Cannot register {singular(kind)} {name!r}: {problem}.")
        records = self._kind(kind)
        if name in records and not replace:
            other = records[name]
            raise PluginError(
                f"{singular(kind)} {name!r} is already registered by {other.distribution} "
                f"({other.target}); pass replace=True to override it."
            )
        records[name] = Record(kind, name, "<registered>", "<runtime>", "-", obj=obj)
        return obj

    def unregister(self, kind: str, name: str) -> None:
        """Remove a component (mainly for tests of register())."""
        self._kind(kind).pop(name, None)

    def list(self, kind: str, pattern: str = "*") -> builtins.list[str]:
        """Sorted names of ``kind`` matching the shell-style ``pattern`` (case-insensitive)."""
        pat = pattern.lower()
        names = (n for n in self._kind(kind) if fnmatch.fnmatch(n.lower(), pat))
        return sorted(names, key=str.lower)

    def records(self, kind: str | None = None) -> builtins.list[Record]:
        """Records (with distribution, version and status) without importing anything."""
        kinds = [kind] if kind else builtins.list(KINDS)
        return [r for k in kinds for _, r in sorted(self._kind(k).items())]

    def record(self, kind: str, name: str) -> Record:
        records = self._kind(kind)
        if name not in records:
            raise PluginError(
                f"Unknown {singular(kind)} {name!r}{suggest(name, builtins.list(records))}. "
                f"Installed {kind}: {', '.join(sorted(records)) or 'none'}."
            )
        return records[name]

    def _declared(self, kind: str, name: str) -> Any:
        """What the entry point names (possibly a Deferred), imported but not resolved."""
        rec = self.record(kind, name)
        obj = discovery.load(rec)
        if obj is None:
            raise self._broken(rec) from rec.cause
        return obj

    def get(self, kind: str, name: str) -> Any:
        """The component object (class or factory); imports its module on first use.

        A deferred implementation is checked against the kind's contract once resolved.
        """
        from unet_core.interfaces import Deferred

        obj = self._declared(kind, name)
        if not isinstance(obj, Deferred):
            return obj
        rec = self.record(kind, name)
        try:
            impl = obj.resolve()
        except ImportFailure as failure:
            rec.error, rec.cause, rec.obj = failure.reason, failure.cause, None
            raise self._broken(rec) from failure.cause
        problem = discovery.contract_problem(kind, impl)
        if problem is not None:
            rec.error, rec.obj = problem, None
            raise self._broken(rec)
        return impl

    @staticmethod
    def _broken(rec: Record) -> PluginError:
        package = rec.distribution not in ("-", "<runtime>")
        way_out = f"Fix or uninstall {rec.distribution}" if package else "Fix it"
        return PluginError(
            f"The {singular(rec.kind)} {rec.name!r} from {rec.distribution} {rec.version} is "
            f"broken: {rec.error}. {way_out} (`unet plugins list --check` lists every broken "
            "component)."
        )

    def config_model(self, kind: str, name: str) -> type[BaseModel]:
        """The Pydantic model that validates ``name``'s parameters (no implementation import)."""
        config: type[BaseModel] = self._declared(kind, name).Config
        return config

    def light_attr(self, kind: str, name: str, attr: str) -> Any:
        """A config-time helper (e.g. ``check_config``) without importing a deferred target."""
        from unet_core.interfaces import Deferred

        obj = self._declared(kind, name)
        return obj.light(attr) if isinstance(obj, Deferred) else getattr(obj, attr, None)

    def validate(self, kind: str, spec: Spec) -> tuple[str, BaseModel]:
        """Split ``spec`` into its name and validated ``Config``; raises ConfigError.

        A :class:`~unet_core.config.refs.ComponentRef` is already validated: it is returned as
        it is, never validated again.
        """
        from pydantic import ValidationError

        from unet_core.interfaces import ValidatedSection

        if isinstance(spec, ValidatedSection):
            if spec.kind != kind:
                raise ConfigError(
                    f"{spec.where} names a {singular(spec.kind)}, not a {singular(kind)}."
                )
            return spec.name, spec.config
        name, params = split_spec(kind, spec)
        config_cls = self.config_model(kind, name)
        try:
            return name, config_cls.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(f"{singular(kind)} {name!r}", exc)) from None

    def create(self, kind: str, spec: Spec, **context: Any) -> Any:
        """Build the component of a ref, or of ``{"name": ..., **params}`` after validating it."""
        name, config = self.validate(kind, spec)
        return build(self.get(kind, name), config, **context)

    def load_all(self, kind: str | None = None) -> builtins.list[Record]:
        """Import every component (for schema export and ``plugins list --check``)."""
        out = []
        for rec in self.records(kind):
            discovery.load(rec)
            if rec.error is not None:
                warnings.warn(
                    f"skipping broken {singular(rec.kind)} {rec.name!r} ({rec.distribution}): "
                    f"{rec.error}",
                    PluginWarning,
                    stacklevel=2,
                )
            out.append(rec)
        return out


def split_spec(kind: str, spec: Mapping[str, Any] | str) -> tuple[str, dict[str, Any]]:
    """``"Adam"`` or ``{"name": "Adam", ...}`` -> ("Adam", params)."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"A {singular(kind)} must be given as a mapping with a 'name' key, got {spec!r}."
        )
    params = dict(spec)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"A {singular(kind)} section needs a 'name' key naming the component.")
    return name, params


def build(obj: Any, config: BaseModel, **context: Any) -> Any:
    """Instantiate a component from its validated config: ``from_config(config, **context)``,
    else ``obj(**config, **the context keywords its constructor takes)`` (a transform whose
    ``__init__`` has no ``stats`` is built without them, by the pipeline and here alike)."""
    from_config = getattr(obj, "from_config", None)
    if callable(from_config):
        return from_config(config, **context)
    return obj(**dict(config), **_taken(obj, context))


def _taken(obj: Any, context: dict[str, Any]) -> dict[str, Any]:
    """The keywords of ``context`` that ``obj``'s signature accepts (all with ``**kwargs``)."""
    import inspect

    if not context:
        return context
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: pass everything
        return context
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return context
    names = {p.name for p in params}
    return {k: v for k, v in context.items() if k in names}


def format_validation_error(what: str, exc: ValidationError) -> str:
    """Pydantic's errors as one readable paragraph."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(section)"
        parts.append(f"{loc}: {err['msg']}")
    return f"Invalid parameters for {what}: " + "; ".join(parts) + "."


default_registry = Registry()

list = default_registry.list  # noqa: A001 - timm/torchvision-style public verb
get = default_registry.get
create = default_registry.create
register = default_registry.register
validate = default_registry.validate
records = default_registry.records
config_model = default_registry.config_model
light_attr = default_registry.light_attr
