"""Training: the loss falls, a bad scan is skipped, a killed run resumes bit for bit,
two DDP processes (torchrun, gloo) end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from guad.data import ArrayDataset, TrainingSet, to_config_grid
from guad.models import get_config, load_model
from guad.train import StepBatchSampler, TrainConfig, train


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks on a shared 2-core machine: one thread avoids OpenMP spin contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fake_grids(seed: int, size=(32, 32, 16)) -> dict:
    """Pre-processed-like arrays: an ellipsoidal brain (~35 HU -> 0.45) with ventricles."""
    rng = np.random.default_rng(seed)
    X, Y, Z = np.meshgrid(*[np.linspace(-1, 1, n) for n in size], indexing="ij")
    r = rng.uniform(0.75, 0.9)
    brain = (X / r) ** 2 + (Y / (r * 1.1)) ** 2 + (Z / 0.9) ** 2 < 1
    vent = (X / 0.15) ** 2 + (Y / rng.uniform(0.25, 0.4)) ** 2 + (Z / 0.4) ** 2 < 1
    img = np.where(brain, 0.45 + 0.03 * rng.standard_normal(size), 0.0)
    img[vent] = 0.12
    anat = np.where(brain, 1, 0).astype(np.uint8)
    anat[vent] = 2
    return {"cmm": img.astype(np.float32), "fgm": img.astype(np.float32), "anatomy": anat}


def write_manifest(tmp_path: Path, n_normal: int = 4, bad: bool = True) -> Path:
    rows = []
    for i in range(n_normal):
        np.savez(tmp_path / f"n{i}.npz", **fake_grids(i))
        rows.append({"scan_id": f"n{i}", "path": f"n{i}.npz", "split": "train", "label": "normal"})
    np.savez(tmp_path / "crit.npz", **fake_grids(99))
    rows.append({"scan_id": "c", "path": "crit.npz", "split": "train", "label": "critical"})
    rows.append({"scan_id": "v", "path": "n0.npz", "split": "val", "label": "normal"})
    if bad:
        (tmp_path / "broken.npz").write_bytes(b"not a scan")
        rows.append({"scan_id": "b", "path": "broken.npz", "split": "train", "label": "normal"})
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def memory_dataset(name: str, n: int = 4) -> ArrayDataset:
    cfg = get_config(name)
    return ArrayDataset([{k: v for k, v in to_config_grid(fake_grids(i), cfg).items()} for i in range(n)])


def losses(out: Path) -> list[float]:
    lines = [json.loads(s) for s in (out / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


def test_manifest_keeps_train_normals_and_skips_a_broken_scan(tmp_path):
    manifest = write_manifest(tmp_path)
    msgs = []
    ts = TrainingSet(manifest, get_config("tiny-fgm"), cache_dir=tmp_path / "cache",
                     log=msgs.append, progress=False)
    assert len(ts.dataset) == 4
    assert len(ts.skipped) == 1 and "broken.npz" in ts.skipped[0][0] and msgs
    item = ts.dataset[0]
    assert item["image"].shape == (1, 16, 16, 8) and item["anatomy"].shape == (1, 16, 16, 8)
    assert set(item["anatomy"].unique().tolist()) <= {0.0, 1.0, 2.0}


def test_data_order_is_a_function_of_the_step():
    a = list(StepBatchSampler(5, 2, 0, 7, seed=1, rank=0, world=1))
    b = list(StepBatchSampler(5, 2, 3, 7, seed=1, rank=0, world=1))
    assert a[3:] == b
    epoch0 = [i for batch in a for i in batch][:5]
    assert sorted(epoch0) == list(range(5))  # every scan once an epoch


@pytest.mark.parametrize("name", ["tiny-cmm", "tiny-fgm"])
def test_few_steps_lower_the_loss(tmp_path, name):
    tc = TrainConfig(model=name[-3:], config=name, out=str(tmp_path / "run"), steps=25,
                     batch_size=4, lr=3e-3, log_every=5, ckpt_every=1000, progress=False)
    res = train(tc, dataset=memory_dataset(name))
    assert res["step"] == 25
    ls = losses(tmp_path / "run")
    assert ls[-1] < 0.6 * ls[0], ls
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 25 and set(ck) >= {"config", "model", "raw_model", "optimizer", "rng"}
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.cfg == get_config(name)


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    ds = memory_dataset("tiny-cmm", n=3)  # 3 scans, batch 2: epochs straddle batches
    common = dict(model="cmm", config="tiny-cmm", steps=7, batch_size=2, ckpt_every=3,
                  log_every=1, progress=False, seed=5)
    straight = train(TrainConfig(out=str(tmp_path / "a"), **common), dataset=ds)
    # "killed" after step 5: the last checkpoint is step 3, steps 4-5 are lost and redone
    assert train(TrainConfig(out=str(tmp_path / "b"), stop_after=5, **common), dataset=ds)["stopped"]
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 3
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **common), dataset=ds)
    assert resumed["params_hash"] == straight["params_hash"]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for key in ("model", "raw_model"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    for s, st in a["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg"], b["optimizer"]["state"][s]["exp_avg"])


def test_train_command_under_torchrun_keeps_ranks_identical(tmp_path):
    manifest = write_manifest(tmp_path, bad=False)
    out = tmp_path / "ddp"
    env = {**os.environ, "GUAD_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "guad", "train", "--model", "cmm", "--config", "tiny-cmm", "--manifest",
           str(manifest), "--out", str(out), "--steps", "4", "--batch-size", "1",
           "--device", "cpu", "--no-progress", "--log-every", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(s) for s in (out / "train_log.jsonl").read_text().splitlines()]
    done = log[-1]
    assert done["event"] == "done" and done["world_size"] == 2 and done["ranks_identical"] is True
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["step"] == 4 and ck["world_size"] == 2


@pytest.mark.slow
def test_trains_from_a_synthetic_tiny_cohort(tmp_path):
    """The whole path: `guad synth` writes NIfTI scans, read_ct + preprocess_ct load them."""
    pytest.importorskip("guad.synth")
    env = {**os.environ, "GUAD_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cohort = tmp_path / "cohort"
    proc = subprocess.run([sys.executable, "-m", "guad", "synth", "--preset", "tiny", "--out",
                           str(cohort), "--limit", "1", "--size", "64", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ts = TrainingSet(cohort / "manifest.csv", get_config("tiny-fgm"), cache_dir=tmp_path / "cache",
                     progress=False)
    assert len(ts.dataset) >= 1 and not ts.skipped
    img = ts.dataset[0]["image"]
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.max() > 0.2  # windowed brain
    res = train(TrainConfig(model="fgm", config="tiny-fgm", out=str(tmp_path / "run"), steps=2,
                            progress=False), dataset=ts.dataset)
    assert res["step"] == 2


def test_init_warm_starts_from_shipped_style_weights(tmp_path):
    ds = memory_dataset("tiny-cmm", n=3)
    common = dict(model="cmm", config="tiny-cmm", batch_size=2, ckpt_every=2, log_every=1, progress=False, seed=5)
    train(TrainConfig(out=str(tmp_path / "a"), steps=4, **common), dataset=ds)
    first = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    cont = train(TrainConfig(out=str(tmp_path / "c"), steps=2, init=str(tmp_path / "a" / "model.pt"), **common),
                 dataset=ds)
    fresh = train(TrainConfig(out=str(tmp_path / "d"), steps=2, **common), dataset=ds)
    assert cont["params_hash"] != fresh["params_hash"]
    other = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert other["config"] == first["config"]


def test_end_at_finishes_early_on_the_longer_schedule(tmp_path):
    """--end-at N: the run stops cleanly at step N with the learning rate of the longer
    schedule (not decayed to its floor), writes model.pt at N, and a re-run does nothing."""
    ds = memory_dataset("tiny-cmm", n=3)
    common = dict(model="cmm", config="tiny-cmm", steps=8, batch_size=2, ckpt_every=100,
                  log_every=1, progress=False, seed=5, lr=1e-3, lr_min=1e-4)
    res = train(TrainConfig(out=str(tmp_path / "a"), end_at=3, **common), dataset=ds)
    assert res["step"] == 3
    assert torch.load(tmp_path / "a" / "model.pt", weights_only=True)["step"] == 3
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["step"] == 3
    log = [json.loads(s) for s in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in log if "lr" in r]
    assert len(lrs) == 3 and lrs[-1] > 5e-4  # mid-way down an 8-step cosine, far from 1e-4
    again = train(TrainConfig(out=str(tmp_path / "a"), end_at=3, **common), dataset=ds)
    assert again["step"] == 3 and again["params_hash"] == res["params_hash"]


def test_grad_checkpointing_trains_to_the_same_weights(tmp_path, monkeypatch):
    from guad.models import HDAE

    switched = []
    real = HDAE.set_checkpointing
    monkeypatch.setattr(HDAE, "set_checkpointing", lambda self, on=True: switched.append(on) or real(self, on))
    ds = memory_dataset("tiny-fgm", n=3)
    common = dict(model="fgm", config="tiny-fgm", steps=3, batch_size=2, progress=False, seed=2)
    plain = train(TrainConfig(out=str(tmp_path / "a"), **common), dataset=ds)
    ckpt = train(TrainConfig(out=str(tmp_path / "b"), grad_checkpointing=True, **common), dataset=ds)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert plain["step"] == ckpt["step"] == 3
    assert switched == [False, True]  # the option reached the network
    for k in a:  # recomputation may reorder float sums: equal to rounding, not bit for bit
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=lambda m: f"{k}: {m}")
    assert not torch.equal(a["unet.conv_in.weight"], initial_weights("tiny-fgm")["unet.conv_in.weight"])


def initial_weights(name: str) -> dict:
    from guad.models import HDAE
    torch.manual_seed(2)
    return HDAE(get_config(name)).state_dict()


def test_bf16_on_the_cpu_trains_reproducibly_with_fp32_weights(tmp_path, monkeypatch):
    """precision='bf16' autocasts the network on a CPU too (AVX-512 BF16 / AMX machines train
    ~2.3x faster); weights, EMA and optimizer stay fp32 and the same seed gives the same run."""
    from guad.models import HDAE

    seen = []
    real = HDAE.forward
    monkeypatch.setattr(HDAE, "forward", lambda self, *a, **k: seen.append(torch.is_autocast_enabled("cpu"))
                        or real(self, *a, **k))
    ds = memory_dataset("tiny-fgm")
    common = dict(model="fgm", config="tiny-fgm", steps=25, batch_size=4, lr=3e-3, log_every=5,
                  progress=False, seed=3, precision="bf16")
    a = train(TrainConfig(out=str(tmp_path / "a"), **common), dataset=ds)
    assert seen and all(seen)  # every forward pass ran under bf16 autocast
    ls = losses(tmp_path / "a")
    assert ls[-1] < 0.6 * ls[0], ls
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())
    b = train(TrainConfig(out=str(tmp_path / "b"), **common), dataset=ds)
    assert b["params_hash"] == a["params_hash"]
    seen.clear()
    train(TrainConfig(out=str(tmp_path / "c"), **{**common, "precision": "auto", "steps": 1}), dataset=ds)
    assert seen == [False]  # auto stays fp32 on a CPU
