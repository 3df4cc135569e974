"""The numeric modes set what they say, and the spread of a printed number is measured as it prints."""

import subprocess
import sys

import nbformat
import pytest

from amortgap.build import numeric_modes, pipeline


def executed(path, outputs: list[str], ignored: str = "") -> None:
    """A notebook as papermill writes one: one code cell per output text (and one ignored cell)."""
    cells = [nbformat.v4.new_code_cell("print(...)", outputs=[nbformat.v4.new_output("stream", text=t)]) for t in outputs]
    cells.append(nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT", outputs=[nbformat.v4.new_output("stream", text=ignored)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 1"), *cells]), path)


@pytest.mark.parametrize("text, step", [("20.44", 0.01), ("7", 1.0), ("-0.066", 0.001), ("1.5e-03", 1e-4)])
def test_last_digit_step(text, step):
    assert numeric_modes.last_digit_step(text) == pytest.approx(step)


def test_printed_numbers_in_order_without_ignored_cells(tmp_path):
    executed(tmp_path / "nb.ipynb", ["gap 20.44 nats, width 32\n", "x_1 = -3.5e-02\n"], ignored="took 12.5 s")
    numbers = numeric_modes.printed_numbers(tmp_path / "nb.ipynb")
    assert numbers.text.tolist() == ["20.44", "32", "-3.5e-02"], "names like x_1 hold no number"
    assert numbers.cell.tolist() == [1, 1, 2] and numbers.position.tolist() == [0, 1, 0]


def test_spread_measures_each_number_against_its_last_printed_digit(tmp_path):
    executed(tmp_path / "a" / "nb.ipynb", ["20.44 and 0.21\n"])
    executed(tmp_path / "b" / "nb.ipynb", ["20.55 and 0.21\n"])
    table = numeric_modes.spread({"native-2": tmp_path / "a", "avx2-2": tmp_path / "b"}, reference="native-2")
    assert table.text.tolist() == ["20.44", "0.21"]
    assert table.spread.tolist() == pytest.approx([0.11, 0.0])
    assert table.step.tolist() == pytest.approx([0.01, 0.01])
    assert table.differs.tolist() == [1, 0]
    executed(tmp_path / "c" / "nb.ipynb", ["20.44\n"])
    with pytest.raises(ValueError, match="different numbers of numbers"):
        numeric_modes.spread({"native-2": tmp_path / "a", "default-1": tmp_path / "c"}, reference="native-2")


def test_modes_set_every_knob_and_clear_leftovers():
    env = numeric_modes.mode_env("native-1", {"PATH": "/bin", "ATEN_CPU_CAPABILITY": "avx2", "MKL_NUM_THREADS": "8"})
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "1", **pipeline.KERNEL_ENV}
    assert numeric_modes.mode_env("default-2", {})["MKL_ENABLE_INSTRUCTIONS"] == "SSE4_2"
    with pytest.raises(ValueError, match="unknown numeric mode"):
        numeric_modes.mode_env("avx9-3")


@pytest.mark.parametrize("mode, capability, threads", [("default-1", "DEFAULT", 1), ("avx2-2", "AVX2", 2)])
def test_a_mode_reaches_torch(mode, capability, threads):
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", probe], env=numeric_modes.mode_env(mode), capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [capability, str(threads)]


def test_mkl_follows_its_mode():
    """The same matrix product in two modes differs in its last bits: the knobs reach MKL's kernels
    (were they ignored, every mode would compute the native product and prove nothing)."""
    probe = ("import torch; g = torch.Generator().manual_seed(0); a = torch.randn(64, 300, generator=g); "
             "b = torch.randn(300, 50, generator=g); print((a @ b).double().sum().item().hex())")
    sums = {mode: subprocess.run([sys.executable, "-c", probe], env=numeric_modes.mode_env(mode), capture_output=True,
                                 text=True, check=True).stdout for mode in ("native-2", "default-2")}
    assert sums["native-2"] != sums["default-2"]
