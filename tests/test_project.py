"""The set-up promises of the README: one dependency list, torch pinned, CI runs the README's command."""

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_is_pinned():
    assert "torch==2.13.0" in pyproject()["project"]["dependencies"]


def test_design_card_packages_are_dependencies():
    project = pyproject()["project"]
    names = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert {"torch", "seaborn", "jupyter", "jupytext", "papermill", "nbval", "pytest", "dvc"} <= names


def test_environment_yml_installs_the_package_with_dev_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["--editable .[dev]"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = pyproject()["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make repro" in readme and "make test" in readme
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert commands == ["make test"]


def test_running_python_satisfies_requires_python():
    minimum = pyproject()["project"]["requires-python"].removeprefix(">=")
    assert sys.version_info[:2] >= tuple(map(int, minimum.split(".")))


def test_the_readmes_map_of_the_house_lists_every_module_and_only_those():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A map of the house", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^\| `(amortgap\.[\w.]+)` \|", section, flags=re.MULTILINE))
    package = ROOT / "lib" / "amortgap"
    modules = {"amortgap." + ".".join(p.relative_to(package).with_suffix("").parts)
               for p in package.rglob("*.py") if p.stem not in ("__init__", "__main__")}
    assert mapped == modules, f"in lib/ only: {sorted(modules - mapped)}; in the README only: {sorted(mapped - modules)}"


def test_the_science_never_imports_the_build_tooling():
    """`import amortgap` means the science: no module outside amortgap.build imports it."""
    package = ROOT / "lib" / "amortgap"
    science = [p for p in package.rglob("*.py") if "build" not in p.relative_to(package).parts]
    assert any(p.parent.name == "study" for p in science), "the study modules were not found"
    for path in [*science, *(ROOT / "notebooks").glob("0*.py")]:  # nor does a notebook: it finds files by its `root`
        assert not re.search(r"^\s*(from|import) (\.+build|amortgap\.build)", path.read_text(), re.MULTILINE), path.name
