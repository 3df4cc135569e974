"""The notebook runner refuses bad parameters before any work; params.yaml and dvc.yaml agree with
the notebooks; profiles merge as documented; a running notebook shows its progress on the terminal; no
committed output or lock entry is stale."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from amortgap.build import pipeline

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.py"))
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())

NOTEBOOK_TEMPLATE = """# %%
import pathlib
pathlib.Path({marker!r}).write_text("work was done")

# %% {tags}
width = 16
lr = 0.01
name = "a"
widths = [1, 2]
decompose = {{"elbo_samples": 10, "ais": {{"steps": 20, "chains": 4}}}}
"""


def make_notebook(tmp_path: Path, tagged: bool = True) -> tuple[Path, Path]:
    marker = tmp_path / "work_done"
    tags = 'tags=["parameters"]' if tagged else ""
    path = tmp_path / "nb.py"
    path.write_text(NOTEBOOK_TEMPLATE.format(marker=str(marker), tags=tags))
    return path, marker


def test_the_notebooks_are_background_setup_experiments_results():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_background", "02_model_setup", "02b_training_protocols",
        "03a_gap_table", "03b_convergence", "03c_width_sweep", "03d_refinement", "03e_certification", "03f_oracle",
        "03g_validation", "03h_split", "03i_encoder_width", "03j_family_matrix", "04_results",
    ]  # fmt: skip


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_a_tagged_parameters_cell_with_valid_defaults(notebook):
    defaults = pipeline.notebook_defaults(notebook)
    assert defaults
    pipeline.check_parameters(notebook, {})  # the defaults themselves obey the range rules
    for value in defaults.values():
        if isinstance(value, str) and value.startswith(("build/", "paper/", "results/", "models/")):
            if value.startswith("paper/published/"):
                continue  # published numbers are read, never written
            assert value.startswith("build/tiny/"), f"{notebook.name}: defaults must be the small case"


def test_every_stage_passes_only_names_its_notebook_has():
    notebook_stages = {n: s for n, s in DVC["stages"].items() if "amortgap.build.pipeline run" in s.get("cmd", "")}
    assert len(notebook_stages) == len(NOTEBOOKS)
    for name, stage in notebook_stages.items():
        cmd = stage["cmd"].split()
        notebook = ROOT / cmd[cmd.index("run") + 1]
        sections = [s for flag, s in zip(cmd, cmd[1:]) if flag == "--section"]
        declared = {param.split(".")[0] for param in stage["params"]}  # a whole section, or some of its keys
        if "campaign_params" in pipeline.notebook_defaults(notebook):  # it reads the campaign section from the file
            assert "campaign" in declared, f"stage {name} reads the campaign section: DVC must track it"
            declared -= {"campaign"}
        assert set(sections) == declared, f"stage {name} must declare the sections it passes"
        parameters = pipeline.load_params(ROOT / "params.yaml", sections)
        overrides = [name for flag, name in zip(cmd, cmd[1:]) if flag == "-p"]
        assert bool(overrides) == ("matrix" in stage), f"stage {name}: a matrix item reaches the notebook by -p"
        parameters |= {name: [0] if name == "seeds" else [16] for name in overrides}
        pipeline.check_parameters(notebook, parameters)


@pytest.mark.parametrize("profile", [None, "quick"])
def test_every_random_image_set_is_drawn_from_the_gap_tables_images(tmp_path, profile):
    """The sweep's frozen-decoder gaps join its L[q] with the gap table's L[q*] image by image, and
    the other experiments reuse its images: every stage draws a nested subset with the same seed."""
    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / "params.yaml").read_text())
    if profile:
        pipeline.apply_profile(copy, profile)
    params = yaml.safe_load(copy.read_text())
    table = params["gap_table"]
    assert params["width_sweep"]["eval_points"] <= table["num_points"]
    for section in ("convergence", "width_sweep", "refinement", "certification", "validation", "oracle"):
        assert params[section]["subset_seed"] == table["subset_seed"], section
    for section in ("width_sweep", "certification"):  # the plateau models' chapters
        assert params[section]["model_dir"] == params["model_setup"]["model_dir"], section
    assert params["width_sweep"]["seeds"] == params["model_setup"]["seeds"]
    assert table["run_dir"] == params["validation"]["run_dir"] == params["convergence"]["run_dir"] == params["refinement"]["run_dir"] == params["campaign"]["model_dir"]
    assert table["protocols"] == params["validation"]["protocols"], "the validation checks the table's own models"
    validated = params["validation"]
    assert table["flow_search"] == [validated["prior_starts"], validated["perturbed_starts"]], \
        "the flow model's flow q* search takes every start the validation tried (the paper says so)"
    matrix = params["family_matrix"]
    assert matrix["images"] == {key: table[key] for key in ("binarization", "num_points", "subset_seed")}, "the gap table's test images"
    assert matrix["decoders"] == {family: f"{table['runs'][family]}_s{matrix['gap_seed']}/{table['protocols'][matrix['gap_protocol']]}"
                                  for family in matrix["decoders"]}, "the gap table's models, whose log p(x) the matrix reads"  # fmt: skip
    assert matrix["flow_search"] == table["flow_search"], "a flow q* as hard-searched as the gap table's flow model's"


def test_profiles_override_only_known_keys(tmp_path):
    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / "params.yaml").read_text())
    pipeline.apply_profile(copy, "quick")
    quick = yaml.safe_load(copy.read_text())
    def assert_overridden(merged: dict, overrides: dict) -> None:
        for key, value in overrides.items():
            if isinstance(value, dict):
                assert_overridden(merged[key], value)
            else:
                assert merged[key] == value

    for section, overrides in PARAMS["profiles"]["quick"].items():
        assert_overridden(quick[section], overrides)
    assert quick["model_setup"]["training"]["lr"] == PARAMS["model_setup"]["training"]["lr"], "untouched keys keep their value"
    # a nested override changes only its own stage: the AIS block the stages share stays whole in the others
    assert quick["gap_table"]["decompose"]["ais"]["steps"] != PARAMS["gap_table"]["decompose"]["ais"]["steps"]
    assert quick["gap_table"]["decompose"]["qstar"]["num_samples"] == PARAMS["protocols"]["qstar"]["num_samples"]
    assert PARAMS["protocols"]["ais"]["steps"] == PARAMS["gap_table"]["decompose"]["ais"]["steps"]
    with pytest.raises(pipeline.ParameterError, match="no profile"):
        pipeline.apply_profile(copy, "huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"s": {"a": 1}, "profiles": {"p": {"s": {"b": 2}}}}))
    with pytest.raises(pipeline.ParameterError, match="unknown keys"):
        pipeline.apply_profile(bad, "p")
    bad.write_text(yaml.safe_dump({"s": {"a": {"b": 1}}, "profiles": {"p": {"s": {"a": {"c": 2}}}}}))
    with pytest.raises(pipeline.ParameterError, match=r"unknown keys \['c'\] of 's.a'"):
        pipeline.apply_profile(bad, "p")


def test_missing_parameters_tag_fails_before_any_work(tmp_path):
    notebook, marker = make_notebook(tmp_path, tagged=False)
    with pytest.raises(pipeline.ParameterError, match="tagged 'parameters'"):
        pipeline.run_notebook(notebook, tmp_path / "out.ipynb", {"width": 8})
    assert not marker.exists() and not (tmp_path / "out.ipynb").exists()


@pytest.mark.parametrize("parameters, message", [
    ({"depth": 3}, "no parameter"),
    ({"width": -4}, "positive integer"),
    ({"width": 2.5}, "must be int"),
    ({"widths": [8, 0]}, "positive integer"),
    ({"widths": [8, "x"]}, "must hold int"),
    ({"lr": -0.1}, "must be positive"),
    ({"name": 3}, "must be str"),
    ({"decompose": {"elbo_samples": 10, "ais": {"steps": 0, "chains": 4}}}, "decompose.ais.steps must be a positive integer"),
    ({"decompose": {"elbo_samples": 10, "ais": {"step": 5}}}, r"decompose.ais has no key\(s\) \['decompose.ais.step'\]"),
    ({"decompose": 3}, "decompose must be dict"),
])
def test_bad_parameters_fail_before_any_work(tmp_path, parameters, message):
    notebook, marker = make_notebook(tmp_path)
    with pytest.raises(pipeline.ParameterError, match=message):
        pipeline.run_notebook(notebook, tmp_path / "out.ipynb", parameters)
    assert not marker.exists() and not (tmp_path / "out.ipynb").exists()


def test_command_line_reports_bad_parameters(tmp_path, capsys):
    notebook, marker = make_notebook(tmp_path)
    assert pipeline.main(["run", str(notebook), str(tmp_path / "o.ipynb"), "-p", "width", "-1"]) == 2
    assert "width must be a positive integer" in capsys.readouterr().err
    assert pipeline.main(["run", str(notebook), str(tmp_path / "o.ipynb"), "--params",
                          str(ROOT / "params.yaml"), "--section", "nope"]) == 2
    assert "no section 'nope'" in capsys.readouterr().err
    assert not marker.exists()


def test_ints_are_accepted_for_floats(tmp_path):
    notebook, _ = make_notebook(tmp_path)
    assert pipeline.check_parameters(notebook, {"lr": 1}) == {"lr": 1}


def test_project_root_is_found_from_below():
    assert pipeline.project_root(ROOT / "tests") == ROOT
    with pytest.raises(FileNotFoundError):
        pipeline.project_root("/")


def test_committed_outputs_are_those_of_the_committed_dvc_lock():
    """The rendered notebooks, tables, figures and PDF in git come from a run at the committed
    dvc.lock: after changing a notebook, a parameter or the library, rerun `make repro`. (Stages
    whose outputs all live in the ignored build/, the site, are views rebuilt on demand; the stages
    the README lists as in progress, and the campaign's runs still training, are left out.)"""
    committed = [name for name, outs in dvc_stages().items() if any(Path(out).parts[0] != "build" for out in outs)
                 and name not in in_progress_stages() | training_stages()]  # fmt: skip
    assert "paper" in committed and "site" not in committed, committed
    status = pipeline.run_dvc(["status", *committed], ROOT, capture=True)
    assert "up to date" in status.stdout, status.stdout


def dvc_stages() -> dict[str, list[str]]:
    """Every stage of dvc.yaml (matrix branches expanded) -> its declared outputs."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: [out.def_path for out in stage.outs] for stage in repo.index.stages}


def test_nothing_stale_every_generated_file_belongs_to_a_stage_and_every_lock_entry_to_dvc_yaml():
    """A stage renamed or removed leaves its rendered notebooks, tables and lock entries behind."""
    stages = dvc_stages()
    outputs = [Path(out) for outs in stages.values() for out in outs]
    committed = pipeline.project_files(ROOT)
    generated = [p for p in committed
                 if p.parts[:2] in {("notebooks", "rendered"), ("paper", "figures"), ("paper", "generated")}
                 or p.parts[0] == "results"]  # fmt: skip
    assert generated, "the committed outputs were not found"
    orphans = [str(p) for p in generated if not any(p == out or out in p.parents for out in outputs)]
    assert not orphans, f"committed files that no stage of dvc.yaml writes: {orphans}"
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert not set(locked) - set(stages), f"dvc.lock entries of stages dvc.yaml lacks: {sorted(set(locked) - set(stages))}"


def test_the_stale_check_can_fail(monkeypatch):
    """The check above is not vacuous: a file under results/ that no stage writes is caught."""
    listed = pipeline.project_files(ROOT)
    monkeypatch.setattr(pipeline, "project_files", lambda root: [*listed, Path("results/stray_table.csv")])
    with pytest.raises(AssertionError, match="stray_table.csv"):
        test_nothing_stale_every_generated_file_belongs_to_a_stage_and_every_lock_entry_to_dvc_yaml()


PROGRESS_NOTEBOOK = """# %% tags=["parameters"]
steps = 3

# %%
from amortgap import progress

for _ in progress.bar(range(steps), desc="toy steps"):
    pass
print("finished", steps)
"""


def test_a_running_notebook_shows_its_cells_and_progress_on_the_terminal_not_in_the_notebook(tmp_path, capfd):
    notebook = tmp_path / "toy.py"
    notebook.write_text(PROGRESS_NOTEBOOK)
    pipeline.run_notebook(notebook, tmp_path / "toy.ipynb", {"steps": 4}, cwd=tmp_path)
    terminal = capfd.readouterr().err
    assert "[toy] cell 1/3: steps = 3" in terminal and "[toy] cell 3/3: from amortgap import progress" in terminal
    assert "[toy]   toy steps: 4/4 in 0 s done" in terminal
    assert "Kernel is running over TCP" not in terminal
    outputs = [o for c in nbformat.read(tmp_path / "toy.ipynb", as_version=4).cells for o in c.get("outputs", [])]
    assert [o.get("text") for o in outputs] == ["finished 4\n"], "the rendered notebook holds no progress"


def stage_scripts() -> dict[str, str]:
    """Every stage that runs a script of this project -> that script (a notebook's runner runs the notebook)."""
    found = {}
    for name, stage in DVC["stages"].items():
        words = (stage.get("cmd") or stage["do"]["cmd"]).split()  # a foreach stage: its "do"
        if words[:4] == ["python", "-m", "amortgap.build.pipeline", "run"]:
            found[name] = words[4]
        elif words[0] == "python" and words[1].endswith(".py"):
            found[name] = words[1]
    return found


def test_every_stage_depends_on_the_library_code_it_runs_and_on_no_other():
    """A stage lists the library files its script imports (directly or not), so that a change to one
    module reruns the stages that use it and marks no other stale (item 7 of issue 37)."""
    scripts = stage_scripts()
    assert {"gap_table", "validation", "model_setup", "appendix"} <= set(scripts)
    for name, script in scripts.items():
        listed = sorted(d.split("#")[0].strip() for d in DVC["stages"][name]["deps"] if str(d).startswith("lib/"))
        assert listed == pipeline.stage_code(ROOT / script, ROOT), f"stage {name}: run `python -m amortgap.build.pipeline deps {script}`"
    assert "lib/amortgap/gap_rows.py" in pipeline.stage_code(ROOT / "notebooks/03a_gap_table.py", ROOT)
    assert "lib/amortgap/gap_rows.py" not in pipeline.stage_code(ROOT / "notebooks/02_model_setup.py", ROOT)


def training_stages() -> set[str]:
    """The campaign's stages (``train@<run>``, ``train_encoder@<run>``, ``train_distilled@<run>``)
    whose run has not finished: its files change while it trains."""
    from amortgap import campaign

    config = campaign.load_config(ROOT / "params.yaml")
    unfinished = {e.run for e in config.entries if campaign.read_status(config.run_dir(e.run, ROOT))["status"] != "finished"}
    return {name for name in dvc_stages() if name.partition("@")[::2] in
            {(kind, run) for kind in ("train", "train_encoder", "train_distilled") for run in unfinished}}  # fmt: skip


def in_progress_stages() -> set[str]:
    """The stages that the README's section "Stages in progress" names (in backticks, one per row)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Stages in progress", 1)[1].split("\n#", 1)[0]
    return {m for line in section.splitlines() if line.startswith("| `") for m in re.findall(r"^\| `([a-z_]+)`", line)}


def test_dvc_status_is_clean_but_for_the_campaign_and_the_stages_in_progress():
    """After every landing `dvc status` names no stage that would rerun, except the campaign's runs
    still training (their models change) and the stages the README lists as in progress."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=True)  # fmt: skip
    stale = {stage for stage, changes in json.loads(status.stdout.strip().splitlines()[-1]).items()
             if any(kind != "changed outs" or any(not out.startswith("build/") for out in change)
                    for entry in changes for kind, change in entry.items())}  # a view under build/ is never committed
    allowed = training_stages() | in_progress_stages()
    assert not stale - allowed, f"stages that would rerun: {sorted(stale - allowed)} (rerun them, or list them in the README)"
    assert not in_progress_stages() - set(DVC["stages"]), "the README lists a stage dvc.yaml lacks"


def test_the_campaign_stages_depend_on_every_model_file_their_params_name():
    """The stages on campaign models (gap table, validation, convergence, refinement) list their
    models file by file (a run still training changes its folder, not these files): adding a seed
    or an epoch to params.yaml needs its files in dvc.yaml too."""
    for stage in ("gap_table", "validation", "convergence", "refinement"):
        p = PARAMS[stage]
        if stage == "convergence":
            wanted = {f"{p['run_dir']}/{p['run']}/train.snapshots/e{epoch}.pt" for epoch in p["epochs"]}
            wanted.add(f"{p['run_dir']}/{p['control_run']}/train.snapshots/e{p['control_epoch']}.pt")
        elif stage == "refinement":  # the model, and the run's record of its training time
            wanted = {f"{p['run_dir']}/{p['run']}/{file}" for file in (p["model_file"], "run.json")}
        else:
            runs = ([f"{p['runs'][f]}_s{s}" for f in p["runs"] for s in p["seeds"][f]] if stage == "gap_table"
                    else list(p["runs"].values()))
            wanted = {f"{p['run_dir']}/{run}/{file}" for run in runs for file in p["protocols"].values()}
        deps = {str(d).split("#")[0].strip() for d in DVC["stages"][stage]["deps"]}
        assert wanted <= deps, f"stage {stage} lacks deps {sorted(wanted - deps)}"
