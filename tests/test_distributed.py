"""Data-parallel training: the epoch sampler, synchronised BatchNorm, and 2 gloo processes vs 1."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from parkit.train.distributed import (CPUSyncBatchNorm, EpochBatchSampler, num_global_batches,
                                      sync_batchnorm, unsync_batchnorm)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_sampler_shards_each_global_batch_across_ranks():
    single = list(EpochBatchSampler(30, 8, seed=5, epoch=2))
    ranks = [list(EpochBatchSampler(30, 8, seed=5, epoch=2, rank=r, world_size=2)) for r in range(2)]
    assert len(single) == 4 and all(len(r) == 4 for r in ranks)
    for k, batch in enumerate(single):
        assert sorted(ranks[0][k] + ranks[1][k]) == sorted(batch)  # same global batch
        assert not set(ranks[0][k]) & set(ranks[1][k])
    # the order is DistributedSampler's permutation for (seed, epoch)
    ds_sampler = torch.utils.data.DistributedSampler(range(30), num_replicas=1, rank=0, seed=5)
    ds_sampler.set_epoch(2)
    assert [i for b in single for _, i in b] == list(ds_sampler)
    assert {e for b in single for e, _ in b} == {2}
    # a new epoch reshuffles; a resumed epoch skips whole global batches
    assert list(EpochBatchSampler(30, 8, seed=5, epoch=3)) != single
    assert [[i for _, i in b] for b in EpochBatchSampler(30, 8, 5, 2, start_batch=2)] == \
           [[i for _, i in b] for b in single[2:]]


def test_batchnorm_safe_drop_rule():
    assert num_global_batches(17, 8) == 2  # a last batch of 1 would break BatchNorm: dropped
    assert num_global_batches(18, 8) == 3
    assert num_global_batches(19, 8, world_size=4) == 2  # 3 samples cannot feed 4 processes
    with pytest.raises(ValueError, match="at least one sample per process"):
        EpochBatchSampler(10, 2, 0, 0, world_size=4)


def test_cpu_sync_batchnorm_is_plain_batchnorm_without_a_process_group():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).train()
    ref = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).train()
    ref.load_state_dict(net.state_dict())
    bn_weight = net[1].weight
    sync_batchnorm(net, torch.device("cpu"))
    assert type(net[1]) is CPUSyncBatchNorm and net[1].weight is bn_weight  # same tensors
    x = torch.randn(6, 4)
    torch.testing.assert_close(net(x), ref(x))
    torch.testing.assert_close(net[1].running_var, ref[1].running_var)
    unsync_batchnorm(net)
    assert type(net[1]) is nn.BatchNorm1d


_DRIVER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from test_engine import QUICK, make_tiny_dataset, tiny_model
    from parkit.train import RECIPES, train
    ds = make_tiny_dataset({data!r}, write=False)
    out = sys.argv[1]
    res = train(tiny_model(), ds, out_dir=os.path.join(out, "tiny"), epochs=2, batch_size=8,
                device="cpu", progress=False, verbose=False, recipe=QUICK, seed=3)
    # the real micro PromptPAR (random backbone, no DropPath so both runs draw nothing at random);
    # SGD, because AdamW turns the rounding noise of near-zero gradients into full-size steps
    sgd = RECIPES["paper"].replace(warmup_prompt=0, warmup_fusion=0, lr_prompt=0.05, lr_fusion=0.05)
    train("promptpar-micro", ds, out_dir=os.path.join(out, "micro"), epochs=2, batch_size=8,
          device="cpu", progress=False, verbose=False, recipe=sgd, seed=3, pretrained=False,
          model_options=dict(vis_prompt=5, mm_drop_path=0.0), test_at_end=False)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(res.model.trainable_state_dict(), os.path.join(out, "tiny", "final.pt"))
""")


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) ends where a single process with the same global batch
    ends: exactly (float tolerance) for the stand-in model, and for the real micro PromptPAR."""
    sys.path.insert(0, str(TESTS))
    from test_engine import make_tiny_dataset, tiny_model

    make_tiny_dataset(tmp_path / "data")
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(tests=str(TESTS), data=str(tmp_path / "data")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    single = subprocess.Popen([sys.executable, str(script), str(tmp_path / "one")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node=2", str(script), str(tmp_path / "two")],
                           env=env, capture_output=True, text=True, timeout=240)
    assert multi.returncode == 0, multi.stderr[-4000:]
    _, err = single.communicate(timeout=240)
    assert single.returncode == 0, err.decode()[-3000:]
    one = torch.load(tmp_path / "one" / "tiny" / "final.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "tiny" / "final.pt", weights_only=True)
    assert set(one) == set(two)
    for k in one:
        if one[k].is_floating_point():
            torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
        else:
            assert torch.equal(one[k], two[k]), k  # num_batches_tracked: same number of steps
    # training did move the weights (a run that changed nothing would match trivially)
    torch.manual_seed(0)
    start = tiny_model().trainable_state_dict()
    assert (one["head.weight"] - start["head.weight"]).abs().max() > 1e-2
    ck1 = torch.load(tmp_path / "one" / "tiny" / "last.pt", weights_only=True)
    ck2 = torch.load(tmp_path / "two" / "tiny" / "last.pt", weights_only=True)
    assert len(ck2["rng"]) == 2  # both ranks' RNG states are saved for exact resume
    for r1, r2 in zip(ck1["history"], ck2["history"]):
        assert r1["val_mA"] == pytest.approx(r2["val_mA"], abs=1e-6)
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-5)
    # the real model: BatchNorms synchronised, every trained tensor within float tolerance
    m1 = torch.load(tmp_path / "one" / "micro" / "last.pt", weights_only=True)
    m2 = torch.load(tmp_path / "two" / "micro" / "last.pt", weights_only=True)
    assert m1["history"][-1]["train_loss"] == pytest.approx(m2["history"][-1]["train_loss"], rel=1e-5)
    for k in m1["model"]:
        if m1["model"][k].is_floating_point():
            torch.testing.assert_close(m2["model"][k], m1["model"][k], rtol=1e-3, atol=1e-4, msg=k)
