"""Registries of sources and providers. A vendor module registers itself on import; nothing
else in the code names a vendor. `load_all()` imports every module of both packages."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from connector.providers.base import Provider
    from connector.sources.base import Source

F = TypeVar("F", bound=Callable[..., Any])

SOURCES: dict[str, Callable[..., "Source"]] = {}
PROVIDERS: dict[str, Callable[..., "Provider"]] = {}
# The settings section (providers.<section>) of each registered provider: one vendor may
# register several providers (one per endpoint), all configured in one section.
PROVIDER_SETTINGS: dict[str, str] = {}


def register_source(name: str) -> Callable[[F], F]:
    def decorate(factory: F) -> F:
        SOURCES[name] = factory
        return factory

    return decorate


def register_provider(name: str, *, settings_section: str | None = None) -> Callable[[F], F]:
    def decorate(factory: F) -> F:
        PROVIDERS[name] = factory
        PROVIDER_SETTINGS[name] = settings_section or name
        return factory

    return decorate


def load_all() -> None:
    for package_name in ("connector.sources", "connector.providers"):
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name != "base":
                importlib.import_module(f"{package_name}.{module.name}")
