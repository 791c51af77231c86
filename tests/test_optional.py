"""vtalign._optional.require and the API's errors when an optional package is missing."""
import pytest
import torch

from tests._missing import run_without
from vtalign._optional import MissingDependency, install_hint, require


def test_require_returns_the_module():
    import json

    assert require("json", "io", "anything") is json


def test_missing_module_is_one_line_import_error():
    with pytest.raises(MissingDependency) as info:
        require("vtalign_no_such_module.sub", "io", "reading things")
    err = info.value
    assert isinstance(err, ImportError) and err.name == "vtalign_no_such_module.sub"
    assert str(err) == 'reading things needs vtalign_no_such_module: pip install "vtalign[io]"'
    assert isinstance(err.__cause__, ModuleNotFoundError)


def test_hint_without_extra_names_the_package():
    assert install_hint("matplotlib", None) == "pip install matplotlib"
    with pytest.raises(MissingDependency, match=r"^testing needs some-dist: pip install some-dist$"):
        require("vtalign_no_such_module", None, "testing", package="some-dist")


def test_installed_but_broken_package_says_so(tmp_path, monkeypatch):
    (tmp_path / "vtalign_broken_pkg.py").write_text("import vtalign_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependency) as info:
        require("vtalign_broken_pkg", "io", "testing")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith('testing needs vtalign_broken_pkg: pip install "vtalign[io]" (it is installed but')
    assert "vtalign_no_such_dependency" in msg


API_SAFETENSORS = """
import os, torch
from vtalign._optional import MissingDependency
from vtalign.probe.features import open_features, save_features
for call in (lambda: open_features("given.safetensors"), lambda: save_features("new.safetensors", torch.ones(4, 2, 3))):
    try:
        call()
    except MissingDependency as e:
        print(isinstance(e, ImportError), "|", e)
print(sorted(os.listdir(".")))
"""


def test_api_safetensors_missing(tmp_path):
    pytest.importorskip("safetensors")
    from vtalign.probe.features import save_features

    save_features(tmp_path / "given.safetensors", torch.ones(4, 2, 3))
    out = run_without(["safetensors"], API_SAFETENSORS, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        'True | reading .safetensors files needs safetensors: pip install "vtalign[io]"',
        'True | writing .safetensors files needs safetensors: pip install "vtalign[io]"',
        "['given.safetensors']",  # the failed save left no file, not even a temporary
    ]


API_PLOTS = """
import os, torch
from vtalign._optional import MissingDependency
from vtalign.probe.report import heatmap_png, plots_unavailable, scaling_png
print(plots_unavailable())
for call in (lambda: heatmap_png("h.png", torch.eye(2), (0, 0)), lambda: scaling_png("s.png", [1], [1], [0.5])):
    try:
        call()
    except MissingDependency as e:
        print(e)
print(os.listdir("."))
"""


def test_api_plots_without_matplotlib(tmp_path):
    out = run_without(["matplotlib"], API_PLOTS, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["drawing plots needs matplotlib: pip install matplotlib"] * 3 + ["[]"]


API_BACKENDS = """
import torch
from vtalign._optional import MissingDependency
from vtalign.ops._common import resolve_backend
for backend in ("triton", "cpp"):
    try:
        resolve_backend(backend, [torch.ones(2)])
    except MissingDependency as e:
        print(e)
"""


def test_api_backends_without_triton_or_cpp_core():
    out = run_without(["triton", "vtalign._C"], API_BACKENDS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        "backend='triton' needs triton: pip install triton",
        "backend='cpp' needs the compiled C++ core vtalign._C, which this install lacks: reinstall with a C++ "
        "compiler (pip install -e .) or use backend='torch'",
    ]
