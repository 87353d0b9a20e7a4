"""Group, version and resource names of the aim.engine.amd.com/v1alpha1 API."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "aim.engine.amd.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Our own category: `aim` and short names like `aimsvc` belong to AMD's AIM
# operator, which may be installed in the same cluster.
CATEGORY = "aim-engine"


@dataclass(frozen=True, slots=True)
class ResourceNames:
    """The names under which one kind is served (CRD `spec.names`).

    Invariant: `plural` is lowercase and is what the REST path and the CRD name use.
    """

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        """`<plural>.<group>`: the CustomResourceDefinition's metadata.name."""
        return f"{self.plural}.{GROUP}"


AIM_ENDPOINT = ResourceNames("AIMEndpoint", "aimendpoints", "aimendpoint", ("aiep",))
AIM_RECIPE = ResourceNames("AIMRecipe", "aimrecipes", "aimrecipe", ("airc",))
AIM_CACHE = ResourceNames("AIMCache", "aimcaches", "aimcache", ("aich",))

KIND_AIM_ENDPOINT = AIM_ENDPOINT.kind
KIND_AIM_RECIPE = AIM_RECIPE.kind
KIND_AIM_CACHE = AIM_CACHE.kind
PLURAL_AIM_ENDPOINTS = AIM_ENDPOINT.plural
PLURAL_AIM_RECIPES = AIM_RECIPE.plural
PLURAL_AIM_CACHES = AIM_CACHE.plural

# The condition type the printer column `Ready` shows; every kind reports it.
CONDITION_READY = "Ready"
