"""Tests for the fedshield.attacks / fedshield.attacks.poisoning package exports."""

from __future__ import annotations

import importlib

import pytest

import fedshield.attacks
import fedshield.attacks.poisoning

MODULES = [
    "alie",
    "backdoor",
    "label_flip",
    "fang",
    "free_rider",
    "gaussian",
    "ipm",
    "min_max",
    "scaling",
    "sign_flip",
    "sybil",
]


def test_both_packages_export_the_same_names() -> None:
    # Execute / Assert
    # the top level adds the threat model (who attacks, when, with what knowledge)
    threat = {"ThreatModel", "choose_malicious", "expected_byzantine"}
    assert sorted(set(fedshield.attacks.__all__) - threat) == sorted(
        fedshield.attacks.poisoning.__all__
    )


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_of_every_module_is_re_exported(module: str) -> None:
    # Prepare
    mod = importlib.import_module(f"fedshield.attacks.poisoning.{module}")

    # Execute / Assert: the same objects, not copies
    for name in mod.__all__:
        assert getattr(fedshield.attacks.poisoning, name) is getattr(mod, name)
        assert getattr(fedshield.attacks, name) is getattr(mod, name)


def test_exported_names_exist() -> None:
    # Execute / Assert
    for name in fedshield.attacks.__all__:
        assert hasattr(fedshield.attacks, name), name
