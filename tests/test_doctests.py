"""Every ``>>>`` example in svde runs as a doctest (examples that need real data, a download or a
long run are marked ``# doctest: +SKIP``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import svde


def _modules() -> list[str]:
    names = [svde.__name__]
    for info in pkgutil.walk_packages(svde.__path__, prefix=f"{svde.__name__}."):
        names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_every_module_is_collected():
    # Guards the walk itself: a package that stopped being found would silently lose its doctests.
    assert {"svde.data.base", "svde.data.io", "svde.data.layout", "svde.data.eval_sets", "svde.data.eval_sets.kitti",
            "svde.data.train_sets", "svde.models.model", "svde.evaluation.entry", "svde.geometry", "svde.api",
            "svde.cli.common"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, monkeypatch, tmp_path):
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "1")  # transforms' examples import albumentations
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} doctest examples failed (see stdout)"
