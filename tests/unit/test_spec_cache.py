"""A pass reads the parsed spec of its resource from the operator's caches: parsed once per
generation, parsed again when the spec (and so the generation) changes."""

from __future__ import annotations

from typing import Any

import pytest

from migrate_safe.k8s.handlers import Caches
from migrate_safe.k8s.spec import SpecError
from tests.unit.crd_defaults import defaulted

KEY = ("shop", "orders")


def body(generation: int, spec: dict[str, Any], uid: str = "u-1") -> dict[str, Any]:
    meta = {"name": "orders", "namespace": "shop", "uid": uid, "generation": generation}
    return {"metadata": meta, "spec": spec}


def spec(lock_timeout: str) -> dict[str, Any]:
    return defaulted(
        {
            "database": {"secretRef": {"name": "db"}},
            "source": {"configMaps": [{"name": "m"}]},
            "apply": {"lockTimeout": lock_timeout},
        }
    )


def caches() -> Caches:
    return Caches({}, {}, {})  # type: ignore[arg-type]  # the spec cache reads no index


def test_one_generation_is_parsed_once_and_a_new_one_again() -> None:
    cache = caches()
    first = cache.spec(KEY, body(1, spec("2s")))
    assert cache.spec(KEY, body(1, spec("2s"))) is first  # a status change: same generation
    changed = cache.spec(KEY, body(2, spec("9s")))
    assert changed is not first and changed.apply.lock_timeout == "9s"


def test_a_recreated_resource_of_the_same_name_is_parsed_anew() -> None:
    cache = caches()
    first = cache.spec(KEY, body(1, spec("2s")))
    assert cache.spec(KEY, body(1, spec("7s"), uid="u-2")).apply.lock_timeout == "7s"
    assert first.apply.lock_timeout == "2s"


def test_a_forgotten_resource_leaves_nothing_cached() -> None:
    cache = caches()
    cache.spec(KEY, body(1, spec("2s")))
    cache.forget(KEY)
    assert cache.specs == {}


def test_a_spec_the_operator_cannot_read_is_an_error_every_time() -> None:
    cache = caches()
    for _ in range(2):
        with pytest.raises(SpecError):
            cache.spec(KEY, body(1, {"source": {}}))
    assert cache.specs == {}
