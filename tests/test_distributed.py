"""Data-parallel training: `python -m training` under torchrun (2 CPU processes, gloo) against one process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from training.checkpoint import load_tensors, read_metadata
from training.distributed import World
from training.nets import build

ROOT = Path(__file__).resolve().parents[1]
#: 1,024 images, global batch 256, 2 epochs: 8 optimizer steps (one-cycle needs more than 4), seconds a run.
ARGS = ["cnn", "--limit", "1024", "--epochs", "2", "--device", "cpu", "--no-progress"]


def run_training(out: Path, data: Path, processes: int) -> dict[str, torch.Tensor]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m"]
    command = [*(launcher if processes > 1 else [sys.executable, "-m"]), "training", *ARGS,
               "--data", str(data), "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=300)
    return load_tensors(out / "cnn" / "model.safetensors")


def test_two_processes_train_like_one(cifar_root, tmp_path):
    single = run_training(tmp_path / "single", cifar_root, 1)
    parallel = run_training(tmp_path / "parallel", cifar_root, 2)
    meta = read_metadata(tmp_path / "parallel" / "cnn" / "model.safetensors")
    assert meta["training"]["epochs_done"] == 2 and meta["data"]["train_images"] == 1024
    torch.manual_seed(0)  # the loop's seed: the weights both runs started from
    initial = build(meta["arch"], meta["config"]).state_dict()
    names = [name for name, weight in single.items()
             if weight.is_floating_point() and not name.endswith(("running_mean", "running_var"))]
    flat = lambda state: torch.cat([state[name].flatten() for name in names])  # noqa: E731
    moved, apart = (flat(single) - flat(initial)).norm(), (flat(parallel) - flat(single)).norm()
    # The two runs take the same steps; they differ only by batch-norm statistics per half batch,
    # bf16 rounding and summation order: far less than the training moved the weights. (Per tensor,
    # a 10-element bias can come near a fifth of its own small update; the whole network cannot.)
    assert apart < 0.2 * moved, (float(apart), float(moved))


def test_one_process_is_the_whole_world():
    world = World()
    batch = torch.arange(10)
    assert world.is_main and world.shard(batch) is batch and world.sum(3, 4.5) == [3, 4.5]


def test_each_rank_keeps_a_disjoint_share_of_the_global_batch():
    batch = torch.arange(10)
    shares = [World(rank, 2).shard(batch) for rank in range(2)]
    assert sorted(torch.cat(shares).tolist()) == batch.tolist()
    assert len(shares[0]) == len(shares[1]) == 5


def test_uneven_global_batches_split_within_one_image():
    sizes = [len(World(rank, 3).shard(torch.arange(256))) for rank in range(3)]
    assert sum(sizes) == 256 and max(sizes) - min(sizes) <= 1
