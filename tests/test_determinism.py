"""Same numbers in every process: training and the gap decomposition give the same bytes in a fresh
process, whatever the allocator's state, and for a model trained now or reloaded from its finished
checkpoint (the two paths a pipeline rerun takes)."""

import subprocess
import sys

import pytest

SCRIPT = r"""
import hashlib, sys, torch
from amortgap import gaps, models, sweep, train
from amortgap.ais import AISConfig
from amortgap.qstar import QStarConfig

if sys.argv[2] == "junk":  # leave the allocator in another state before any real work
    junk = [torch.empty(n) for n in (17, 4099, 123457, 3, 65537)]
g = torch.Generator().manual_seed(0)
x = torch.rand(300, 784, generator=g)
valid = (torch.rand(100, 784, generator=g) > 0.5).float()
base = models.VAEConfig(latent_dim=8, decoder_hidden=(64,))
(result,) = sweep.train_members([sweep.Member(sweep.member_config(base, 32, 2), 0)], x, valid,
                                train.TrainConfig(epochs=2, batch_size=50), sys.argv[1])
config = gaps.DecomposeConfig(elbo_samples=200, iwae_samples=200, ais=AISConfig(steps=20, chains=4),
                              qstar=QStarConfig(max_steps=100, num_samples=10), seed=0)
table = gaps.decompose(result.model, valid[:20], config)
weights = b"".join(p.detach().contiguous().numpy().tobytes() for p in result.model.state_dict().values())
print(hashlib.sha256(weights + table.to_csv(float_format="%.17g").encode()).hexdigest())
"""


def run(checkpoints, allocator: str) -> str:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(checkpoints), allocator], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


@pytest.mark.slow
def test_fresh_and_reloaded_models_give_the_same_bytes_in_every_process(tmp_path):
    trained = run(tmp_path / "a", "plain")  # trains, then decomposes
    reloaded = run(tmp_path / "a", "junk")  # reloads the finished checkpoint, other allocator state
    again = run(tmp_path / "b", "junk")  # trains afresh in another allocator state
    assert len(trained) == 64
    assert trained == reloaded == again
