"""Training, exact resume, evaluation report, checkpoints, enrollment and "unknown"."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _crash import count_optimizer_steps, kill_during_step
from _synth import make_prepared, voice

from speakerid.card import Calibration
from speakerid.checkpoint import CheckpointError, checkpoint_card, load_checkpoint, model_from_checkpoint
from speakerid.config import override
from speakerid.data import PreparedDataset
from speakerid.models import build_model
from speakerid.pipeline import enroll
from speakerid.registry import RegistryError, SpeakerRegistry
from speakerid.runtime import Identifier, InferenceOptions, load_engine
from speakerid.training import TrainConfig, budget, get_config, train

REPO = Path(__file__).resolve().parents[1]

# A small MFCC GRU learns the synthetic voices in ~1 s of CPU; the raw dilated GRU is trained on real speech
# (FSDD) for the shipped model. The training machinery is the same for both.
TINY = dict(
    model="mfcc-gru-5x20",
    epoch_crops="clips",  # one crop per clip and epoch: the step arithmetic below
    hidden=[16, 16],
    dilations=[1, 2],
    crop=2048,
    batch_size=8,
    lr=1e-2,
    optimizer="adam",
    ckpt_every=2,
    threads=1,
    val_max_crops=2,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("data"), n_speakers=3, per_speaker=12)


def _cfg(data, out, **kw):
    d = dict(TINY)
    d.update(kw)
    return TrainConfig(name="t", data=str(data), out=str(out), **d)


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = train(_cfg(prepared, out, epochs=6), progress=False)
    return out, summary


def test_training_lowers_the_loss_and_writes_artifacts(trained):
    out, summary = trained
    assert summary["collapse"]["collapsed"] is False, summary["collapse"]
    rows = summary["metrics"]
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert summary["test"]["utt_top1"] >= 5 / 6, summary["test"]  # it learned: 6 test utterances, chance 1/3
    for name in (
        "last.pt",
        "best.pt",
        "metrics.csv",
        "curves.png",
        "confusion.png",
        "test_report.json",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    rep = json.loads((out / "test_report.json").read_text())
    for key in ("crop_top1", "crop_top5", "utt_top1", "utt_top5", "per_speaker", "confusion", "n_crops"):
        assert key in rep
    assert set(rep["per_speaker"]) == {"spk0", "spk1", "spk2"}
    assert sum(map(sum, rep["confusion"])) == rep["n_utterances"] == 6
    ck = load_checkpoint(out / "best.pt")  # weights_only=True inside
    card = checkpoint_card(ck)
    assert card.labels == ("spk0", "spk1", "spk2") and card.frontend.crop == 2048
    assert card.calibration.eer is not None and ck["train_config"]["seed"] == 0


def test_resume_after_sigkill_between_checkpoints_continues_exactly(prepared, tmp_path):
    """A real training process is SIGKILLed after optimizer step 3 (last.pt holds step 2, ckpt_every=2); the
    resumed run executes only the 9 - 2 = 7 missing steps and ends with the uninterrupted run's metrics and
    weights. Training is seeded, so a resume that retrained from scratch would match the weights too: the step
    count is what tells them apart."""
    cfg = dict(TINY, name="t", data=str(prepared), epochs=3)
    with count_optimizer_steps() as n_full:
        full = train(TrainConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    assert n_full[0] == 9 == full["steps"]  # 3 epochs x 3 steps
    payload = (
        "from speakerid.training import TrainConfig, train\n"
        f"train(TrainConfig(out={str(tmp_path / 'b')!r}, **{cfg!r}), progress=False)\n"
    )
    kill_during_step(payload, at=3, workdir=tmp_path)
    saved = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (saved["step"], saved["epoch"], saved["step_in_epoch"]) == (2, 0, 2)  # mid-epoch, before the kill
    with count_optimizer_steps() as n_resumed:
        resumed = train(TrainConfig(out=str(tmp_path / "b"), **cfg), resume=True, progress=False)
    assert n_resumed[0] == 9 - 2, f"resume ran {n_resumed[0]} optimizer steps, expected 7"
    timing = ("samples_per_s", "train_s")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(resumed["metrics"]) == strip(full["metrics"])
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_cpu_bf16_autocast_training(prepared, tmp_path):
    """amp="on" on CPU trains under bfloat16 autocast (the linear layers compute in bf16), keeps float32
    weights, and still learns the voices."""
    seen = set()

    def hook(module, args, out):
        if isinstance(module, torch.nn.Linear) and module.training:
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        summary = train(_cfg(prepared, tmp_path, epochs=6, amp="on"), progress=False)
    finally:
        handle.remove()
    assert torch.bfloat16 in seen, f"no bf16 matmul during training (saw {seen})"
    rows = summary["metrics"]
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert summary["test"]["utt_top1"] >= 5 / 6, summary["test"]  # 6 test utterances, chance is 1/3
    ck = load_checkpoint(tmp_path / "best.pt")
    assert ck["train_config"]["amp"] == "on"
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())


def test_enroll_identify_and_unknown(trained, tmp_path):
    out, _ = trained
    engine = load_engine(out / "best.pt")
    reg = SpeakerRegistry.new(engine)
    clips = []
    for k in range(3):
        p = tmp_path / f"alice_{k}.wav"
        sf.write(p, voice(0, 12000, seed=500 + k), 16000)
        clips.append(p)
    bob = tmp_path / "bob.wav"
    sf.write(bob, voice(2, 12000, seed=900), 16000)
    enroll(reg, "Alice", clips[:2], engine)
    enroll(reg, "Bob", [bob], engine)
    reg.save(tmp_path / "reg.json")
    ident = Identifier(engine, tmp_path / "reg.json")
    held_out = ident.identify(clips[2])
    assert held_out.mode == "registry" and held_out.speaker == "Alice", held_out
    # A voice never enrolled (speaker 1) is "unknown" at the threshold calibrated in training ...
    never = tmp_path / "carol.wav"
    sf.write(never, voice(1, 12000, seed=77), 16000)
    assert reg.threshold == engine.threshold == checkpoint_card(load_checkpoint(out / "best.pt")).threshold
    calibrated = ident.identify(never)
    assert calibrated.speaker == "unknown" and calibrated.score < engine.threshold, calibrated
    # ... and at a strict one.
    strict = Identifier(engine, tmp_path / "reg.json", InferenceOptions(threshold=0.999))
    assert strict.identify(never).speaker == "unknown"


def test_registry_names_are_data_not_paths(trained, tmp_path):
    out, _ = trained
    engine = load_engine(out / "best.pt")
    reg = SpeakerRegistry(engine.card.replace(calibration=Calibration(0.5)))
    emb = np.eye(16)[:1]
    assert reg.add("../x", emb) == "../x"  # stored as a JSON key, no file is created from it
    assert reg.add("  Zoë  ", emb) == "Zoë"
    for bad, msg in [
        ("", "empty"),
        ("   ", "empty"),
        ("a\nb", "control characters"),
        ("x" * 65, "longer than 64"),
        ("unknown", "reserved"),
    ]:
        with pytest.raises(RegistryError, match=msg):
            reg.add(bad, emb)
    with pytest.raises(RegistryError, match="already enrolled"):
        reg.add("Zoë", emb)
    reg.save(tmp_path / "r.json")
    assert sorted(os.listdir(tmp_path)) == ["r.json"]
    assert SpeakerRegistry.load(tmp_path / "r.json").names == ["../x", "Zoë"]
    other = SpeakerRegistry(engine.card.replace(fingerprint="0" * 16))
    with pytest.raises(RegistryError, match="enroll the speakers again"):
        other.check_model(engine)


def test_bad_checkpoint_files_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a speakerid checkpoint or not safe to load"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match=r"missing.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a speakerid checkpoint"):
        model_from_checkpoint(other)


def test_config_overrides_reject_unknown_keys_and_bad_types():
    cfg = override(get_config("vctk-dilated-gru-l0-3"), ["--lr", "0.01", "--hidden=20,20"])
    assert cfg.lr == 0.01 and cfg.hidden == [20, 20] and cfg.batch_size == 128 and cfg.rms_alpha == 0.9
    with pytest.raises(
        ValueError, match=r"unknown option --lrr \(did you mean --lr\?\); valid: --aam_margin, --amp"
    ):
        override(cfg, ["--lrr", "1"])
    with pytest.raises(ValueError, match="--epochs expects int, got 'ten'"):
        override(cfg, ["--epochs", "ten"])
    with pytest.raises(ValueError, match=r"--hidden expects list\[int\], got '20,x'"):
        override(cfg, ["--hidden", "20,x"])
    with pytest.raises(ValueError, match="--lr needs a value"):
        override(cfg, ["--lr"])
    assert override(cfg, {"lr": 1}).lr == 1.0  # Python values are type-checked, ints pass as floats
    with pytest.raises(ValueError, match="--epochs expects int, got 2.5"):
        override(cfg, {"epochs": 2.5})
    r = subprocess.run(
        [sys.executable, "train.py", "--config", "vctk-mfcc-gru-5x20", "--show-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    assert r.returncode == 0 and json.loads(r.stdout)["model"] == "mfcc-gru-5x20"


def test_dropout_override_reaches_the_model_and_is_checked(prepared, tmp_path):
    """--dropout sets the dropout between the recurrent layers (and so the model's name); out of range refused."""
    cfg = get_config("sentence-mfcc-dilated-gru")
    assert cfg.model_config(4).dropout == 0.0  # -1 keeps the preset's
    mc = override(cfg, ["--dropout", "0.3"]).model_config(4)
    assert mc.dropout == 0.3 and mc.name.endswith(", dropout 0.3")
    model = build_model(mc).train()
    assert model.body.dropout is not None and model.body.dropout.p == 0.3
    bad = _cfg(prepared, tmp_path / "bad", dropout=1.0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        train(bad, progress=False)
    assert not (tmp_path / "bad" / "last.pt").exists()


def _free_port() -> int:
    """A TCP port free right now (the OS picks it), so parallel runs cannot collide on a fixed one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_train_like_one(prepared, tmp_path):
    """2-process DDP on CPU (gloo) sees the same global batches as the single-process run, and the ranks say
    (in the metrics, all-reduced from inside the ranks) that there were 2 of them, each with half the batch."""
    args = [
        "--config",
        "fsdd-default",
        "--init_from",
        "",
        "--data",
        str(prepared),
        "--model",
        "dilated-gru-l0-3",
        "--hidden",
        "12,12,12",
        "--dilations",
        "8,16,32",
        "--crop",
        "2048",
        "--batch_size",
        "8",
        "--lr",
        "1e-2",
        "--optimizer",
        "adam",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--lr_schedule",
        "constant",
        "--val_max_crops",
        "2",
        "--epoch_crops",
        "clips",
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run(
        [sys.executable, "train.py", *args, "--out", str(tmp_path / "one")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
        env=env,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            "train.py",
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
        env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "last.pt")
    assert a["step"] == b["step"] and checkpoint_card(a).labels == checkpoint_card(b).labels
    for ra, rb in zip(a["metrics"], b["metrics"], strict=True):
        per_epoch = ra["rank_samples_max"]  # the whole epoch on the single rank
        assert (ra["world_size"], ra["local_batch"], ra["rank_samples_min"]) == (
            1,
            8,
            per_epoch,
        ) and per_epoch
        assert (rb["world_size"], rb["local_batch"]) == (2, 4), rb
        assert rb["rank_samples_min"] == rb["rank_samples_max"] == per_epoch // 2, rb  # each rank: half
    for k in a["model"]:  # same global batch, gradients averaged across ranks: same weights up to fp error
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-3, atol=1e-4)
    ra = [r["train_loss"] for r in a["metrics"]]
    rb = [r["train_loss"] for r in b["metrics"]]
    np.testing.assert_allclose(ra, rb, rtol=1e-3)
    assert PreparedDataset(prepared).speakers == list(checkpoint_card(b).labels)


def test_cli_evaluate_enroll_and_registry(trained, prepared, tmp_path):
    out, _ = trained
    ck = str(out / "best.pt")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "speakerid.cli",
            "evaluate",
            "--checkpoint",
            ck,
            "--data",
            str(prepared),
            "--out",
            str(tmp_path / "ev"),
        ],
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    trained_rep = json.loads((out / "test_report.json").read_text())  # the same checkpoint on the same split
    assert rep["n_utterances"] == 6 and rep["utt_top1"] == trained_rep["utt_top1"] >= 5 / 6
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["confusion"] == trained_rep["confusion"]
    assert (tmp_path / "ev" / "report.json").is_file() and (tmp_path / "ev" / "confusion.png").is_file()

    clip = tmp_path / "dana.wav"
    sf.write(clip, voice(1, 9000, seed=3), 16000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    reg = tmp_path / "reg.json"
    base = [sys.executable, "-m", "speakerid.cli"]
    r = subprocess.run(
        [*base, "enroll", "--model", ck, "--registry", str(reg), "--name", "Dana", str(clip), str(empty)],
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    assert r.returncode == 1 and "empty.wav: empty file (0 bytes)" in r.stderr  # bad clip reported, not fatal
    assert json.loads(r.stdout)["enrolled"] == [{"name": "Dana", "clips": 1}]
    r = subprocess.run(
        [*base, "enroll", "--model", ck, "--registry", str(reg), "--name", "Dana", str(clip)],
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    assert r.returncode == 2 and "already enrolled" in r.stderr
    r = subprocess.run(
        [*base, "registry", "list", "--model", ck, "--registry", str(reg)],
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    assert json.loads(r.stdout)["speakers"] == [{"name": "Dana", "clips": 1}]
    r = subprocess.run(
        [*base, "registry", "remove", "Dana", "--model", ck, "--registry", str(reg)],
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    assert r.returncode == 0 and json.loads(r.stdout)["speakers"] == []
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    r = subprocess.run(
        [*base, "evaluate", "--checkpoint", str(bad), "--data", str(prepared)],
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    assert r.returncode == 2 and "bad.pt: not a speakerid checkpoint or not safe to load" in r.stderr
    assert "Traceback" not in r.stderr


def _utterance_embeddings(model, data, indices, crop):
    """(U, D) unit embeddings: the mean of each utterance's (up to 4) fixed-crop embeddings, normalised."""
    from speakerid.data import FixedCropDataset

    ds = FixedCropDataset(data, indices, crop, max_crops=4)
    out = torch.zeros(len(indices), model.config.hidden[-1], dtype=torch.float64)
    with torch.no_grad():
        for n in range(len(ds)):
            x, _, pos = ds[n]
            _, emb = model.forward_with_embedding(torch.as_tensor(x)[None])
            out[pos] += emb[0].double()
    return torch.nn.functional.normalize(out, dim=1)


def _brute_force_rates(genuine, impostor, thr):
    """False-accept and false-reject rates at ``thr``, counted pair by pair."""
    fa = sum(1 for s in impostor if s >= thr) / len(impostor)
    fr = sum(1 for s in genuine if s < thr) / len(genuine)
    return fa, fr


def test_calibrated_threshold_separates_pairs_as_its_eer_says(trained, prepared, tmp_path):
    """The "unknown" threshold stored by training is the EER point of the closed-set simulation: recomputed
    here pair by pair (train-split centroids vs valid-split utterances), at the stored threshold the false-accept
    and false-reject rates average to the stored EER and are as close as any threshold makes them. Then the same
    for calibrate_threshold on five voices the model never saw, where genuine and impostor scores overlap."""
    from speakerid.training import calibrate_threshold

    out, summary = trained
    cal = summary["calibration"]
    assert checkpoint_card(load_checkpoint(out / "best.pt")).calibration == Calibration.from_dict(cal)
    assert load_engine(out / "best.pt").threshold == pytest.approx(cal["threshold"])
    model = model_from_checkpoint(out / "best.pt")

    def check(root, cal):
        data = PreparedDataset(root)
        tr, va = data.split("train"), data.split("valid")
        et, ev = _utterance_embeddings(model, data, tr, 2048), _utterance_embeddings(model, data, va, 2048)
        yt, yv = [data.label(i) for i in tr], [data.label(i) for i in va]
        cent = {
            k: torch.nn.functional.normalize(et[[j for j, y in enumerate(yt) if y == k]].sum(0), dim=0)
            for k in sorted(set(yt))
        }
        genuine = [float(ev[u] @ cent[k]) for u in range(len(va)) for k in cent if k == yv[u]]
        impostor = [float(ev[u] @ cent[k]) for u in range(len(va)) for k in cent if k != yv[u]]
        assert (len(genuine), len(impostor)) == (cal["n_genuine"], cal["n_impostor"])
        fa, fr = _brute_force_rates(genuine, impostor, cal["threshold"])
        assert (fa + fr) / 2 == pytest.approx(cal["eer"], abs=1e-9), (fa, fr, cal)
        everywhere = [-np.inf, np.inf] + [s + d for s in genuine + impostor for d in (-1e-7, 1e-7)]
        best_gap = min(abs(x - y) for x, y in (_brute_force_rates(genuine, impostor, t) for t in everywhere))
        assert abs(fa - fr) <= best_gap + 1e-12, (fa, fr, best_gap)
        return cal

    check(prepared, cal)
    unseen = make_prepared(
        tmp_path / "unseen", n_speakers=5, per_speaker=8, seed=9, splits=(("train", 5), ("valid", 3))
    )
    hard = check(unseen, calibrate_threshold(model, PreparedDataset(unseen), crop=2048))
    assert hard["eer"] > 0  # overlapping scores: the threshold's position matters here


def test_enrollment_eer_on_held_out_speakers(trained, tmp_path):
    """EER machinery on speakers the model never saw (speaker-disjoint), against a brute-force check."""
    from speakerid.evaluation import enrollment_eer, equal_error_rate

    out, _ = trained
    unseen = make_prepared(tmp_path / "unseen", n_speakers=5, per_speaker=8, seed=9, splits=(("test", 8),))
    data = PreparedDataset(unseen)
    model = model_from_checkpoint(out / "best.pt")
    rep = enrollment_eer(model, data, "test", n_enroll=3, crop=2048)
    assert rep["speakers"] == 5 and rep["n_genuine"] == 5 * 5 and rep["n_impostor"] == 5 * 5 * 4
    assert 0.0 <= rep["eer"] <= 0.5
    # Brute force: on overlapping random scores, FAR and FRR counted pair by pair at the returned threshold
    # average to the EER, and no threshold brings them closer together.
    rng = np.random.default_rng(5)
    for _ in range(20):
        gen, imp = rng.normal(0.6, 0.2, rng.integers(3, 40)), rng.normal(0.3, 0.2, rng.integers(3, 80))
        eer, thr = equal_error_rate(gen, imp)
        fa, fr = _brute_force_rates(gen, imp, thr)
        assert (fa + fr) / 2 == pytest.approx(eer, abs=1e-12)
        cands = [-np.inf, np.inf] + [v + d for v in np.concatenate([gen, imp]) for d in (-1e-9, 1e-9)]
        assert abs(fa - fr) <= min(abs(x - y) for x, y in (_brute_force_rates(gen, imp, t) for t in cands))
    eer, thr = equal_error_rate(np.array([0.9, 0.6]), np.array([0.7, 0.1]))  # FAR = FRR = 1/2 at 0.65
    assert eer == 0.5 and abs(thr - 0.65) < 1e-9
    eer, thr = equal_error_rate(np.array([0.9, 0.8]), np.array([0.1, 0.2]))
    assert eer == 0.0 and 0.2 < thr < 0.8  # separable: threshold in the middle of the gap


def test_cli_enroll_with_the_shipped_model_keeps_its_speakers(tmp_path):
    """A new registry is empty unless asked: ``--with-bundled`` starts it from the shipped model's speakers."""
    from speakerid.runtime import default_model_path

    if not default_model_path().is_file():
        pytest.skip("the shipped model is missing (speakerid/pretrained/default/model.pt)")
    clip = tmp_path / "zed.wav"
    sf.write(clip, voice(3, 12000, seed=11), 16000)
    bundled = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    for flag, expected in (([], ["Zed"]), (["--with-bundled"], ["Zed", *bundled])):
        home = tmp_path / f"home{len(flag)}"
        r = subprocess.run(
            [sys.executable, "-m", "speakerid.cli", "enroll", *flag, "--name", "Zed", str(clip)],
            capture_output=True,
            text=True,
            timeout=600,  # liveness only
            env=dict(os.environ, SPEAKERID_HOME=str(home)),
        )
        assert r.returncode == 0, r.stderr
        reg = SpeakerRegistry.load(json.loads(r.stdout)["registry"])
        assert reg.names == expected, (flag, reg.names)
        assert str(home) in json.loads(r.stdout)["registry"]  # never written into the package


def test_epoch_budget_scales_with_the_audio(prepared, tmp_path):
    """An epoch draws max(1, length // crop) crops per clip, so its steps follow the amount of audio, not the
    number of files; --show-config and the first log line say how many steps and seconds of audio the run uses."""
    data = PreparedDataset(prepared)
    train_idx = data.split("train")
    per_clip = [max(1, data.utterances[i].length // 2048) for i in train_idx]
    cfg = _cfg(prepared, tmp_path / "run", epochs=2, epoch_crops="audio", batch_size=8)
    b = budget(cfg)
    assert b["crops_per_epoch"] == sum(per_clip) > len(train_idx)  # the synthetic clips hold 3-5 crops each
    assert b["steps_per_epoch"] == sum(per_clip) // 8 and b["steps"] == 2 * b["steps_per_epoch"]
    assert b["audio_s"] == pytest.approx(b["steps"] * 8 * 2048 / 16000, abs=0.1)
    clips = budget(_cfg(prepared, tmp_path, epochs=2, epoch_crops="clips", batch_size=8))
    assert clips["steps_per_epoch"] == len(train_idx) // 8
    assert budget(_cfg(prepared, tmp_path, epochs=2, max_steps=5))["steps"] == 5
    lines = []
    summary = train(cfg, progress=False, log=lines.append)
    assert summary["steps"] == b["steps"] and summary["budget"] == b
    assert lines[0].startswith("t: mfcc dilated GRU 2x16, dilations 1..2, fusion readout; budget: ")
    assert (
        f"budget: {b['steps']} optimizer steps" in lines[0] and f"{b['audio_s']:.0f} s of audio" in lines[0]
    )
    r = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config",
            "fsdd-mfcc-dilated-gru",
            "--data",
            str(prepared),
            "--show-config",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # liveness only
    )
    shown = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert shown["budget"] == budget(override(get_config("fsdd-mfcc-dilated-gru"), ["--data", str(prepared)]))
    assert shown["builds"] == "mfcc dilated GRU 4x64, dilations 1..8, mean readout"
    assert "optimizer steps" in r.stderr and "s of audio" in r.stderr


def test_an_unlearnable_run_is_reported_as_collapsed(prepared, tmp_path):
    """lr = 0: the weights never move, so validation stays at chance. The run says so in its summary and
    checkpoints, calibrates no "unknown" threshold from it, and train.py --fail-on-collapse exits 3."""
    cfg = _cfg(prepared, tmp_path / "lib", epochs=2, lr=0.0, collapse_min_steps=1)
    summary = train(cfg, progress=False, log=lambda _: None)
    c = summary["collapse"]
    assert c["collapsed"] and c["split"] == "valid" and c["reasons"], c
    assert summary["calibration"] is None
    ck = load_checkpoint(tmp_path / "lib" / "best.pt")
    assert ck["collapse"]["collapsed"] and checkpoint_card(ck).calibration.eer is None  # never calibrated
    assert json.loads((tmp_path / "lib" / "summary.json").read_text())["collapse"]["collapsed"]
    args = ["--config", "fsdd-default", "--data", str(prepared), "--lr", "0", "--epochs", "1", "--crop", "2048",
            "--batch_size", "8", "--hidden", "8,8", "--dilations", "1,2", "--collapse_min_steps", "1",
            "--threads", "1", "--epoch_crops", "clips", "--init_from", "", "--no-progress"]  # fmt: skip
    for flag, rc in (([], 0), (["--fail-on-collapse"], 3)):
        r = subprocess.run(
            [sys.executable, "train.py", *args, *flag, "--out", str(tmp_path / f"cli{rc}")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,  # liveness only
        )
        assert r.returncode == rc, r.stderr[-2000:]
        assert "WARNING: the model COLLAPSED" in r.stderr and "No unknown-speaker threshold" in r.stderr


def _imports(path: Path, module: str) -> set[str]:
    """speakerid modules imported anywhere in a file (module level or inside functions), as dotted names."""
    import ast

    out, pkg = set(), module.rsplit(".", 1)[0] if not path.name == "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("speakerid")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.startswith("speakerid"):
                out |= {base} | {f"{base}.{a.name}" for a in node.names}  # names may be submodules
    return out


def test_the_library_never_imports_its_cli_and_training_has_no_import_cycles():
    root = REPO / "speakerid"
    graph = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        mod = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[mod] = _imports(path, mod)
    users = sorted(m for m, deps in graph.items() if "speakerid.cli" in deps and m != "speakerid.cli")
    assert users == [], f"library modules importing speakerid.cli: {users}"
    mine = [m for m in graph if m.startswith(("speakerid.training", "speakerid.tasks", "speakerid.config"))]

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen and d in graph:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = [m for m in mine if m in reach(m) and m not in ("speakerid.training", "speakerid.tasks")]
    assert cycles == [], f"import cycles through {cycles}"
    assert "speakerid.tasks" not in {d.rsplit(".", 1)[0] for m in graph if m.startswith("speakerid.training")
                                     for d in graph[m]}  # fmt: skip
