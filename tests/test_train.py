import errno
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from core import labels
from core.dataset import load
from core.errors import UserError
from core.estimator import AAE
from core.labels import unseen
from core.model import AAEModel, encode_images
from core.devices import pick_device
from core.diagnostics import within_sd
from core.fit import fit_run
from core.runlog import TrainingFailed, snapshot_rows
from core.runs import Run
from core.settings import Neighbourhood, Settings
from core.train import _order, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_run_folder_holds_everything(small_demo, tmp_path, tiny_settings):
    run = fit_run(tmp_path / "run", tiny_settings, str(small_demo))
    st = run.status()
    assert st["state"] == "done" and st["epoch"] == 3
    m = run.metrics()
    assert list(m["epoch"]) == [1, 2, 3]
    for col in ["recon_loss", "disc_loss", "gen_loss", "disc_acc", "seconds", "within_3sd"]:
        assert m[col].notna().all()
    cfg = run.config()
    assert cfg["settings"]["width"] == 8 and cfg["fingerprint"] and cfg["data"] == str(small_demo.resolve())
    assert {"torch", "numpy", "umap-learn"} <= set(cfg["versions"])
    snaps = run.snapshots()
    assert sorted(snaps) == [1, 2, 3] and snaps[3].shape == (50, 2) and len(run.snapshot_sample()) == 50
    ckpt = run.load_checkpoint()
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 3


def test_reproducible_on_cpu(small_demo, tiny_settings):
    ds = load(small_demo, 32)
    s, local = replace(tiny_settings, epochs=7), labels.is_target(ds.items)  # the neighbours from epoch 6
    a, b = train(s, ds.images, local=local), train(s, ds.images, local=local)
    pd.testing.assert_frame_equal(a.history.drop(columns="seconds"), b.history.drop(columns="seconds"))
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_the_gpu_code_path_runs_on_cpu(small_demo, tiny_settings, monkeypatch):
    """What CUDA runs (bf16 autocast around all three steps, each batch normalised on the device, the
    neighbourhood and shape terms, one host sync per epoch), here on the CPU."""
    import core.neighbours
    import core.shape
    import core.train

    monkeypatch.setattr(core.train, "AMP_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(core.shape, "AFTER", 0)  # the shape term from the first epoch
    monkeypatch.setattr(core.train, "SEEN_BYTES", 0)
    engine = os.path.dirname(core.train.__file__)
    syncs, counting = [], [True]

    def counted(name):
        real = getattr(torch.Tensor, name)

        def f(t, *a, **k):
            if counting[0] and os.path.dirname(sys._getframe(1).f_code.co_filename) == engine:  # the engine's own
                syncs.append(name)
            return real(t, *a, **k)
        return f

    def graph(*a, real=core.neighbours.neighbour_graph):  # found once before training, on the host
        counting[0] = False
        try:
            return real(*a)
        finally:
            counting[0] = True

    for name in ("tolist", "item", "cpu", "numpy", "__bool__", "__float__"):  # how a value reaches the host
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    monkeypatch.setattr(core.neighbours, "neighbour_graph", graph)
    ds = load(small_demo, 32)
    s = replace(tiny_settings, epochs=2, neighbourhood=Neighbourhood(after=0))
    out = train(s, ds.images, local=labels.is_target(ds.items))
    per_epoch = syncs[:len(syncs) // 2]
    assert syncs == per_epoch * 2 and per_epoch.count("tolist") == 1  # the metrics, once per epoch
    syncs.clear()
    train(replace(s, batch_size=20), ds.images, local=labels.is_target(ds.items))  # more batches, no more syncs
    assert syncs == per_epoch * 2 and len(per_epoch) < len(ds.images) // 20  # the monitor's one pass aside
    assert np.isfinite(out.history.drop(columns="seconds").to_numpy()).all()
    assert out.history["recon_loss"].iloc[-1] < out.history["recon_loss"].iloc[0]
    assert all(p.dtype == torch.float32 for p in out.model.parameters())  # bf16 compute, fp32 weights


def test_resume_after_interruption_loses_and_repeats_no_row(small_demo, tmp_path, tiny_settings):
    s = replace(tiny_settings, epochs=5, checkpoint_every=2)
    straight = fit_run(tmp_path / "straight", s, str(small_demo)).metrics()

    def crash(row):
        if row["epoch"] == 3:  # after epoch 3's row is written, one epoch past the last checkpoint (2)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_run(tmp_path / "run", s, str(small_demo), on_epoch=crash)
    run = Run(tmp_path / "run")
    assert run.status()["state"] == "interrupted" and list(run.metrics()["epoch"]) == [1, 2, 3]
    fit_run(tmp_path / "run", resume=True)
    m = run.metrics()
    assert list(m["epoch"]) == [1, 2, 3, 4, 5] and run.status()["state"] == "done"
    # the resumed run continues exactly as the uninterrupted one (same order, weights, optimiser state)
    cols = ["recon_loss", "disc_loss", "gen_loss", "disc_acc"]
    np.testing.assert_allclose(m[cols].to_numpy(), straight[cols].to_numpy(), rtol=1e-5)


def test_resume_can_add_epochs(small_demo, tmp_path, tiny_settings):
    fit_run(tmp_path / "run", replace(tiny_settings, epochs=2), str(small_demo))
    run = fit_run(tmp_path / "run", resume=True, overrides={"epochs": 4})
    assert list(run.metrics()["epoch"]) == [1, 2, 3, 4] and run.config()["settings"]["epochs"] == 4


def test_stop_request_ends_after_the_batch_with_a_checkpoint(small_demo, tmp_path, tiny_settings):
    run = Run(tmp_path / "run")

    def stop_in_epoch_2(epoch, batch, n):
        if epoch == 2 and batch == 1:
            run.request_stop()

    fit_run(run.dir, tiny_settings, str(small_demo), on_batch=stop_in_epoch_2)
    st = run.status()
    assert st["state"] == "stopped" and st["epoch"] == 1 and not run.stop_requested()
    assert run.load_checkpoint()["epoch"] == 1 and list(run.metrics()["epoch"]) == [1]
    fit_run(run.dir, resume=True)
    assert run.status()["state"] == "done" and list(run.metrics()["epoch"]) == [1, 2, 3]


def _poisoned_at(epoch: int, monkeypatch):
    """An on_batch callback that turns the decoder's weights to NaN from `epoch` on (the model is captured)."""
    holder = {}

    def capture(s):
        holder["model"] = AAEModel(s)
        return holder["model"]

    def poison(e, batch, n):
        if e >= epoch:
            with torch.no_grad():
                for p in holder["model"].decoder.parameters():
                    p.fill_(float("nan"))

    monkeypatch.setattr("core.train.AAEModel", capture)
    return poison


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(small_demo, tmp_path, tiny_settings, monkeypatch):
    run = Run(tmp_path / "run")
    with pytest.raises(TrainingFailed, match="nan"):
        fit_run(run.dir, tiny_settings, str(small_demo), on_batch=_poisoned_at(2, monkeypatch))
    st = run.status()
    assert st["state"] == "failed" and "diverged" in st["message"]
    ckpt = run.load_checkpoint()
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_a_run_that_fails_before_its_first_checkpoint_says_so_and_frees_its_name(small_demo, tmp_path, tiny_settings,
                                                                                 monkeypatch):
    run = Run(tmp_path / "run")
    with monkeypatch.context() as m:
        with pytest.raises(TrainingFailed, match="no checkpoint had been written yet"):
            fit_run(run.dir, tiny_settings, str(small_demo), on_batch=_poisoned_at(1, m))
    assert run.status()["state"] == "failed" and run.never_checkpointed()
    fit_run(run.dir, replace(tiny_settings, epochs=1), str(small_demo))  # the same name, started again
    assert run.status()["state"] == "done" and len(run.metrics()) == 1


def _spawn_training(run_dir, data, epochs=200, prelude=""):
    code = prelude + (
        "import sys; sys.path.insert(0, %r)\n"
        "from core.settings import Settings\nfrom core.fit import fit_run\n"
        "s = Settings.from_preset('fast', image_size=32, width=8, disc_width=32, epochs=%d, batch_size=20,"
        " device='cpu', checkpoint_every=2, snapshot_every=50)\n"
        "fit_run(%r, s, %r)\n" % (ROOT, epochs, str(run_dir), str(data)))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_rows(run, n, proc, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if run.metrics_path.exists() and len(run.metrics()) >= n:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    pytest.fail("training did not reach the expected epoch")


def test_sigkill_mid_training_then_resume(small_demo, tmp_path):
    run = Run(tmp_path / "run")
    proc = _spawn_training(run.dir, small_demo)
    _wait_for_rows(run, 3, proc)
    proc.kill()
    proc.wait()
    assert run.status()["state"] == "interrupted"
    ckpt_epoch = run.load_checkpoint()["epoch"]
    assert ckpt_epoch >= 2
    fit_run(run.dir, resume=True, overrides={"epochs": ckpt_epoch + 2})
    epochs = list(run.metrics()["epoch"])
    assert epochs == list(range(1, ckpt_epoch + 3))


# In the trainer: from the second checkpoint on, write half of model.pt's bytes, say so, then hang (killed there).
_HANG_IN_CHECKPOINT = """
import os, sys, tempfile, time
sys.path.insert(0, {root!r})
from core import runs
real = runs.atomic_write
def hanging(path, data):
    if path.name == "model.pt" and path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".model.pt.", suffix=".tmp", dir=path.parent)
        os.write(fd, bytes(data)[:len(data) // 2])
        open({mark!r}, "w").close()
        time.sleep(600)
    real(path, data)
runs.atomic_write = hanging
"""


def test_sigkill_while_writing_a_checkpoint_then_resume(small_demo, tmp_path):
    run, mark = Run(tmp_path / "run"), tmp_path / "in-checkpoint"
    proc = _spawn_training(run.dir, small_demo, prelude=_HANG_IN_CHECKPOINT.format(root=str(ROOT), mark=str(mark)))
    t0 = time.time()
    while not mark.exists():
        assert proc.poll() is None and time.time() - t0 < 120, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert list(run.dir.glob(".model.pt.*.tmp"))  # the half-written checkpoint
    assert run.status()["state"] == "interrupted"
    assert run.load_checkpoint()["epoch"] == 2  # the last complete one, untouched
    assert list(run.metrics()["epoch"]) == [1, 2, 3, 4]  # epoch 4 ended, its checkpoint did not
    fit_run(run.dir, resume=True, overrides={"epochs": 6})
    assert list(run.metrics()["epoch"]) == [1, 2, 3, 4, 5, 6]  # 3 and 4 trained again, nothing lost or repeated
    assert run.load_checkpoint()["epoch"] == 6 and not list(run.dir.glob(".*.tmp"))


def test_a_full_disk_is_one_clear_error(small_demo, tmp_path, tiny_settings, monkeypatch, capsys):
    from core import cli, runs

    real, writes = runs.atomic_write, []

    def disk_fills_up(path, data):
        writes.append(path.name)
        if path.name == "metrics.csv" and writes.count("metrics.csv") > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write", disk_fills_up)
    code = cli.main(["train", "--data", str(small_demo), "--run-dir", str(tmp_path / "run"), "--preset", "fast",
                     "--image-size", "32", "--epochs", "5", "--device", "cpu"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1
    assert "cannot write to the run folder" in errors[0] and "No space left on device" in errors[0]
    monkeypatch.setattr(runs, "atomic_write", real)
    assert Run(tmp_path / "run").status()["state"] == "failed"


def test_sigterm_stops_cleanly(small_demo, tmp_path):
    run = Run(tmp_path / "run")
    proc = _spawn_training(run.dir, small_demo)
    _wait_for_rows(run, 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    st = run.status()
    assert st["state"] == "stopped" and run.load_checkpoint()["epoch"] == st["epoch"]


def test_paper_preset_runs_at_a_small_size(small_demo, tmp_path):
    s = Settings.from_preset("paper", image_size=16, width=64, disc_width=64, epochs=2, device="cpu")
    assert s.arch == "dense" and s.batch_size == 100 and s.prior_std == 5
    run = fit_run(tmp_path / "run", s, str(small_demo))
    assert run.status()["state"] == "done" and len(run.metrics()) == 2


def test_paper_preset_matches_the_study():
    s = Settings.from_preset("paper")
    assert (s.arch, s.image_size, s.width, s.latent_dim, s.prior_std, s.batch_size, s.epochs, s.lr, s.beta1) == (
        "dense", 256, 1000, 2, 5.0, 100, 200, 1e-3, 0.9)
    e = Settings.from_preset("paper", paper_exact=True).effective()
    assert (e.disc_lr, e.gen_lr, e.adv_beta1, e.disc_noise, e.scale_codes) == (1e-3, 1e-3, 0.9, 0.0, False)
    m = AAEModel(e)
    sizes = [p.shape for p in m.encoder.parameters()]
    assert sizes == [(1000, 196608), (1000,), (1000, 1000), (1000,), (2, 1000), (2,)]
    assert [p.shape for p in m.discriminator.parameters()][-2] == (1, 1000)
    assert m.code_scale == 1.0


def test_balanced_sampling_draws_cultures_equally():
    labels = np.array([0] * 700 + [1] * 280 + [2] * 20)
    order = _order(len(labels), labels, torch.Generator().manual_seed(0))
    share = np.bincount(labels[order.numpy()], minlength=3) / len(order)
    assert np.allclose(share, 1 / 3, atol=0.05)


def test_balanced_training_runs(small_demo, tmp_path, tiny_settings):
    run = fit_run(tmp_path / "run", replace(tiny_settings, balanced=True, epochs=1), str(small_demo))
    assert run.status()["state"] == "done"


def test_devices():
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            pick_device("cuda")


def test_mixture_prior_and_larger_latent(small_demo):
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=16, epochs=1, latent_dim=3,
                             prior="mixture", prior_components=4, device="cpu", local=False)
    result = train(s, load(small_demo, 32).images)
    z = result.model.prior.sample(1000)
    assert z.shape == (1000, 3) and result.history["epoch"].tolist() == [1]


@pytest.mark.parametrize("bad", [dict(lr=-1), dict(epochs=0), dict(batch_size=1), dict(prior_std=0),
                                 dict(image_size=48), dict(device="tpu"), dict(beta1=1.0)])
def test_settings_out_of_range_are_user_errors(bad):
    with pytest.raises(UserError):
        Settings.from_preset("fast", **bad)


def test_existing_run_and_unwritable_folder(small_demo, tmp_path, tiny_settings):
    fit_run(tmp_path / "run", replace(tiny_settings, epochs=1), str(small_demo))
    with pytest.raises(UserError, match="already holds a run"):
        fit_run(tmp_path / "run", tiny_settings, str(small_demo))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        fit_run(tmp_path / "file" / "run", tiny_settings, str(small_demo))
    with pytest.raises(UserError, match="no run"):
        fit_run(tmp_path / "missing", resume=True)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/figurines-pwned",))


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    run = Run(tmp_path / "run")
    run.write_config({"settings": {}})
    with open(run.model_path, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    if os.path.exists("/tmp/figurines-pwned"):
        os.remove("/tmp/figurines-pwned")
    with pytest.raises(UserError, match="refused"):
        run.load_checkpoint()
    assert not os.path.exists("/tmp/figurines-pwned")


def test_estimator_face(small_demo, tmp_path, tiny_settings):
    ds = load(small_demo, 32)
    est = AAE("fast", width=8, disc_width=16, epochs=1, device="cpu")
    codes = est.fit_transform(ds.images, ds.items["culture"])
    assert codes.shape == (len(ds.items), 2) and len(est.history_) == 1
    assert not est.settings_.local  # told nothing of a target culture
    told = AAE("fast", width=8, disc_width=16, epochs=1, device="cpu").fit(ds.images, local=labels.is_target(ds.items))
    assert told.settings_.local and told.model_.decoder[0].in_features == 3  # the code and the flag
    assert est.inverse_transform(codes[:3]).shape == (3, 32, 32, 3)
    fit_run(tmp_path / "run", tiny_settings, str(small_demo))
    loaded = AAE.load(tmp_path / "run", device="cpu")
    assert loaded.transform(ds.images[:5]).shape == (5, 2) and len(loaded.history_) == 3


def test_form_style_discounts_clay_colour_and_tone_but_keeps_the_figure():
    """The same figure in red-brown and in yellow-grey clay, lit differently, looks the same to a form model."""
    img = np.full((2, 16, 16, 3), 128, np.uint8)
    relief = np.linspace(0.8, 1.2, 8)[:, None, None]
    img[0, 4:12, 6:10] = (np.array([168, 96, 62]) * relief).astype(np.uint8)
    img[1, 4:12, 6:10] = (np.array([190, 170, 130]) * relief * 1.05).astype(np.uint8)
    form = AAEModel(Settings(style="form")).normalise(torch.from_numpy(img))
    assert torch.allclose(form[0], form[1], atol=0.02)
    assert (form[:, :, :4] == 0).all() and form[0, :, 4:12, 6:10].std() > 0.2  # background 0, the relief kept
    colour = AAEModel(Settings(style="colour")).normalise(torch.from_numpy(img))
    assert (colour[0] - colour[1]).abs().max() > 0.2


def test_runs_from_before_the_style_and_augment_settings_were_shown_colour_as_it_is():
    stored = Settings().to_dict()
    del stored["style"], stored["augment"]
    assert Settings.from_run(stored).style == "colour" and Settings.from_dict(stored).style == "form"
    assert not Settings.from_run(stored).augment and Settings.from_dict(stored).augment
    assert Settings.from_preset("fast").augment and not Settings.from_preset("paper").augment
    with pytest.raises(UserError, match="style"):
        Settings.from_preset("fast", style="texture")


def test_a_guided_run_sees_source_labels_but_never_the_held_out_ones(small_demo, tmp_path, tiny_settings):
    from core import influence
    from core.demo import HB, SOURCES
    from core.embed import encode_run

    run = fit_run(tmp_path / "run", replace(tiny_settings, guided=True, epochs=2), str(small_demo))
    cfg = run.config()
    assert cfg["sources"] == sorted(SOURCES)
    assert (cfg["effective"]["prior"], cfg["effective"]["prior_components"]) == ("mixture", 3)
    fit_run(run.dir, resume=True, overrides={"epochs": 3})
    assert run.metrics()["epoch"].tolist() == [1, 2, 3]
    enc = encode_run(run.dir)
    seen = influence.seen_by(cfg, enc)
    source = (enc["culture"] != HB).to_numpy()
    assert not seen[~source].any() and 0.45 < seen[source].mean() < 0.75  # 40% of each source held out
    index, _ = labels.guide(enc, 0.4, tiny_settings.seed)
    assert ((index >= 0) == seen).all()


def test_the_label_hold_out_is_stable_per_file():
    paths = [f"Achaemenid/{i:04d}.jpg" for i in range(2000)]
    hidden = unseen(paths, 0.4, seed=0)
    assert 0.37 < hidden.mean() < 0.43
    assert (unseen(paths[::-1], 0.4, seed=0)[::-1] == hidden).all()  # not the order: the file decides
    assert (unseen(paths[:500], 0.4, seed=0) == hidden[:500]).all()  # adding files moves no other file


def test_augmentation_varies_the_framing_and_hides_one_patch_per_image():
    from core.augment import augmented

    x = torch.full((200, 3, 32, 32), 0.5)
    x[:, :, :, :16] = 0.9  # bright on the left: a mirrored view is bright on the right
    out = augmented(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, augmented(x, torch.Generator().manual_seed(0)))
    hidden = (out == 0).all(1).float().mean((1, 2))  # the patch, and the background brought into view
    assert ((hidden >= 0.02) & (hidden <= 0.6)).all()
    left, right = out[:, 0, 8:24, 2:10].mean((1, 2)), out[:, 0, 8:24, 22:30].mean((1, 2))
    mirrored = (right > left).float().mean()
    assert 0.35 < mirrored < 0.65  # about half are mirrored
    assert out.min() >= 0 and out.max() <= 0.9 + 1e-6  # form: blends of the image and background, no tone added


def test_colour_augmentation_varies_the_figure_and_keeps_the_background():
    from core.augment import augmented

    x = torch.zeros(100, 3, 32, 32)
    x[:, 0, 8:24, 8:24], x[:, 1, 8:24, 8:24], x[:, 2, 8:24, 8:24] = 0.6, 0.2, -0.2  # a red-brown figure
    out = augmented(x, torch.Generator().manual_seed(1), colour=True)
    assert (out[:, :, :3, :3] == 0).all()  # the corners stay neutral background
    centre = out[:, :, 14:18, 14:18].mean((2, 3))  # inside the figure whatever the framing (unless hidden)
    shown = centre.abs().sum(1) > 0.1
    assert centre[shown, 0].std() > 0.02 and (centre[shown, 0] > centre[shown, 2]).all()  # varied, still red


def test_augmented_and_guided_runs_train_and_resume(small_demo, tmp_path, tiny_settings):
    run = fit_run(tmp_path / "run", replace(tiny_settings, augment=True, epochs=1), str(small_demo))
    fit_run(run.dir, resume=True, overrides={"epochs": 2})
    assert run.metrics()["epoch"].tolist() == [1, 2] and run.config()["effective"]["augment"]


@pytest.mark.parametrize("guided", [False, True])
def test_cluster_head_runs_train_resume_and_encode(small_demo, tmp_path, tiny_settings, guided):
    """Makhzani et al.'s section 6 map: cluster heads kept apart plus an offset matched to the prior."""
    from core import diagnostics
    from core.embed import encode_run, spaces
    from core.model import load_model

    run = fit_run(tmp_path / "run", replace(tiny_settings, clusters=2, guided=guided, epochs=2), str(small_demo))
    assert run.config()["effective"]["clusters"] == (3 if guided else 2)  # guided: one per source at least
    assert run.config()["effective"]["prior"] == "gaussian"
    fit_run(run.dir, resume=True, overrides={"epochs": 3})
    assert run.metrics()["epoch"].tolist() == [1, 2, 3]
    enc, e = spaces(run.dir)
    assert len(encode_run(run.dir)) == len(enc) and e["offset"].shape == e["aae"].shape
    model = load_model(run.load_checkpoint())
    x = model.normalise(torch.from_numpy(np.zeros((4, 32, 32, 3), np.uint8) + 100))
    logits, offset = model.parts(x)
    assert torch.allclose(model.encode(x), logits.softmax(1) @ model.heads * model.code_scale + offset, atol=1e-5)
    heads = model.heads.detach()
    assert torch.pdist(heads).min() > model.settings.head_gap * 0.8  # kept apart
    within = diagnostics.for_run(run.dir)["prior"]["within_sd"]  # measured on the style part
    assert within == pytest.approx(diagnostics.within_sd(e["offset"], run.config()["settings"]["prior_std"]))


def test_cluster_heads_are_refused_with_a_mixture_prior(tiny_settings):
    with pytest.raises(UserError, match="gaussian prior for its style part"):
        replace(tiny_settings, clusters=3, prior="mixture").validated()
    with pytest.raises(UserError, match=r"must be 0 \(none\)"):
        replace(tiny_settings, clusters=1).validated()


def test_a_local_run_tells_its_decoder_which_figurines_are_targets(small_demo, tmp_path, tiny_settings):
    """Settings.local: the decoder draws from the code and a target flag; everything downstream passes the flag."""
    from core import diagnostics, explore
    from core.dataset import load
    from core.embed import encode_run, reconstruction_errors
    from core.labels import is_target
    from core.model import load_model

    run = fit_run(tmp_path / "run", replace(tiny_settings, local=True, epochs=2), str(small_demo))
    fit_run(run.dir, resume=True, overrides={"epochs": 3})
    assert run.metrics()["epoch"].tolist() == [1, 2, 3] and run.config()["effective"]["local"]
    model = load_model(run.load_checkpoint())
    z = torch.zeros(2, 2)
    as_source, as_target = model.decode(z), model.decode(z, torch.tensor([True, True]))
    assert torch.equal(as_source, model.decode(z, torch.tensor([False, False])))  # the default: as sources
    assert not torch.allclose(as_source, as_target)  # the flag is an input of the decoder
    ds = load(small_demo, 32, run.config()["effective"]["background"])
    target = is_target(ds.items)
    assert 0 < target.mean() < 1
    enc = encode_run(run.dir)
    errors = reconstruction_errors(model, ds.images, target, batch_size=64)  # flags follow the batches
    assert np.allclose(enc["recon_error"], errors, atol=1e-6)
    assert not np.allclose(errors[target], reconstruction_errors(model, ds.images[target]))
    first = np.flatnonzero(target)[:3]
    assert not np.array_equal(explore.reconstructions(model, ds.images[first], target[first]),
                              explore.reconstructions(model, ds.images[first], np.zeros(3, bool)))
    d = diagnostics.for_run(run.dir)  # told which are targets: separation read among the sources alone
    src = enc[~is_target(enc)]
    assert d["quality"]["aae"]["knn_accuracy"] == diagnostics.knn_accuracy(src[["aae_x", "aae_y"]].to_numpy(),
                                                                          src["culture"])
    paper = Settings.from_preset("paper", local=True, paper_exact=True).effective()
    assert not paper.local  # the study's settings exactly


def test_the_neighbourhood_term_keeps_look_alikes_together(small_demo, tmp_path, tiny_settings):
    """Settings.neighbours: each figurine's pixel neighbours, a margin cost, and a run that trains, resumes and
    encodes with it."""
    from core.embed import encode_run
    from core.model import AAEModel
    from core.neighbours import neighbour_cost, neighbour_graph

    twins = np.repeat(np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), 2, axis=0)
    model, pixels = AAEModel(tiny_settings), torch.from_numpy(twins)
    near = neighbour_graph(lambda rows: model.normalise(pixels[rows]), len(twins), seed=0, a=Neighbourhood(k=1))
    assert near[:, 0].tolist() == [i ^ 1 for i in range(20)]  # each image's nearest is its twin
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0], [3.0, 3.0]])
    assert neighbour_cost(z, z) == 0  # neighbours in place, every other code far enough
    assert neighbour_cost(z, -z) > 0  # neighbours further than the other codes

    s = replace(tiny_settings, neighbours=True, local=True, epochs=2,
                neighbourhood=Neighbourhood(after=1))  # the term from the 2nd epoch of a tiny run
    run = fit_run(tmp_path / "run", s, str(small_demo))
    fit_run(run.dir, resume=True, overrides={"epochs": 3})
    assert run.metrics()["epoch"].tolist() == [1, 2, 3] and run.config()["effective"]["neighbours"]
    plain = fit_run(tmp_path / "plain", replace(s, neighbours=False, epochs=3), str(small_demo))
    # the curve called reconstruction stays the MSE alone: the margin cost is logged beside it, from epoch 2
    assert (run.metrics()["map_loss"] > 0).tolist() == [False, True, True]
    assert (plain.metrics()["map_loss"] == 0).all()
    assert not np.allclose(encode_run(run.dir)[["aae_x", "aae_y"]], encode_run(plain.dir)[["aae_x", "aae_y"]])
    assert not Settings.from_preset("paper", neighbours=True, paper_exact=True).effective().neighbours


def test_the_fast_default_is_local_with_neighbours_where_a_culture_is_asked_about(small_demo, tmp_path, tiny_settings):
    """The fast preset tells its decoder which figurines are targets and keeps look-alikes together; a folder
    without a target culture trains unlocal; the paper preset and runs from before the settings have neither."""
    from core.cli import parser
    from core.demo import SOURCES

    fast, paper = Settings.from_preset("fast"), Settings.from_preset("paper")
    assert fast.local and fast.neighbours and not paper.local and not paper.neighbours
    assert not Settings.from_run({k: v for k, v in fast.to_dict().items() if k not in ("local", "neighbours")}).local
    train_args = parser().parse_args(["train", "--data", "d", "--run-dir", "r", "--no-local", "--no-neighbours"])
    assert train_args.local is False and train_args.neighbours is False

    sources = tmp_path / "sources"  # two cultures, no find-sites: no culture is asked about
    for culture in SOURCES[:2]:
        (sources / culture).mkdir(parents=True)
        for p in list((small_demo / culture).rglob("*.*"))[:20]:
            (sources / culture / p.name).write_bytes(p.read_bytes())
    run = fit_run(tmp_path / "run", replace(tiny_settings, epochs=1), str(sources))
    assert not run.config()["effective"]["local"] and run.config()["effective"]["neighbours"]


def test_the_critic_matches_the_photographs_or_their_varied_views(small_demo, tiny_settings, monkeypatch):
    """Settings.matched: whose codes the critic compares with the prior's draws (and the monitor measures). With
    every varied view blank, the views' codes are all one; the photographs' are not."""
    import core.train
    from core.model import AAEModel as Model

    seen, real = [], Model.critic_cost

    def spy(model, logits, z, *a):
        seen.append(z.detach())
        return real(model, logits, z, *a)

    monkeypatch.setattr(Model, "critic_cost", spy)
    monkeypatch.setattr(core.train.Augment, "__call__", lambda self, x, g: torch.zeros_like(x))
    ds = load(small_demo, 32)
    for matched in ("views", "photographs"):
        seen.clear()
        out = train(replace(tiny_settings, epochs=1, matched=matched), ds.images, local=labels.is_target(ds.items))
        assert (seen[0].std(0).max() > 1e-4) == (matched == "photographs"), matched
        assert np.isfinite(out.history.drop(columns="seconds").to_numpy()).all()
        # the live monitor measures the photographs as taken (the snapshot sample), whatever the critic sees
        sample = ds.images[snapshot_rows(len(ds.images), tiny_settings.snapshot_size, 0)]
        codes = encode_images(out.model, sample)
        assert out.history["within_3sd"].iloc[-1] == within_sd(codes, tiny_settings.prior_std)[3]


def test_look_alikes_can_be_judged_in_the_descriptors(small_demo, tmp_path, tiny_settings, monkeypatch):
    """Settings.looks: the look-alike graph over each figurine's HOG descriptors rather than the model's pixels."""
    import core.neighbours
    from core.neighbours import Neighbours

    twins = np.repeat(np.random.default_rng(0).normal(size=(10, 40)).astype(np.float32), 2, axis=0)
    s = replace(tiny_settings, neighbours=True, looks="descriptors", neighbourhood=Neighbourhood(k=1, after=1))
    blank = lambda rows: torch.zeros(len(rows), 3, 32, 32)  # noqa: E731  the pixels say nothing here
    near = Neighbours(s, blank, len(twins), torch.device("cpu"), looks=twins).near
    assert near[:, 0].tolist() == [i ^ 1 for i in range(20)]  # each figurine's nearest is its twin
    # given images alone, the run judges them in the HOG descriptors of those images, axes fitted to the sources
    ds = load(small_demo, 32)
    seen, real = [], core.neighbours.neighbour_graph
    monkeypatch.setattr(core.neighbours, "neighbour_graph", lambda view, n, *a: seen.append(view(torch.arange(n)))
                        or real(view, n, *a))
    train(replace(s, epochs=1), ds.images, local=labels.is_target(ds.items))
    monkeypatch.undo()
    src = ~labels.is_target(ds.items)
    assert seen[0].shape == (len(ds.items), min(60, src.sum() - 1)) and np.allclose(seen[0][src].mean(0), 0, atol=1e-3)
    run = fit_run(tmp_path / "run", replace(s, epochs=2, neighbourhood=Neighbourhood(after=1)), str(small_demo))
    assert run.config()["effective"]["looks"] == "descriptors"
    assert (run.metrics()["map_loss"] > 0).tolist() == [False, True]  # the term from epoch 2
    # judged in the descriptor space the shares are read in: components fitted to the source figurines alone
    from core.fit import _looks

    ds = load(small_demo, 32, run.config()["effective"]["background"])
    x, source = _looks(ds, None), ~labels.is_target(ds.items)
    assert x.shape == (len(ds.items), min(60, source.sum() - 1)) and np.allclose(x[source].mean(0), 0, atol=1e-3)
    assert np.abs(x[~source].mean(0)).max() > 0.1  # the targets are placed by the sources' axes, not centred


def test_normalised_once_or_in_every_step_the_training_is_the_same(small_demo, tiny_settings, monkeypatch):
    """What the model sees is computed once on a CPU when it fits (SEEN_BYTES), else per batch: the same run."""
    import core.train as T

    ds = load(small_demo, 32)
    s, local = replace(tiny_settings, epochs=2), labels.is_target(ds.items)
    once = train(s, ds.images, local=local)
    monkeypatch.setattr(T, "SEEN_BYTES", 0)
    each = train(s, ds.images, local=local)
    for p, q in zip(once.model.parameters(), each.model.parameters()):
        assert torch.equal(p, q)


def test_the_shape_term_draws_clumped_codes_to_the_prior():
    """Settings.shape (core.shape): ranked among many photographs' codes, each code is drawn to the prior's
    quantile; a collection's codes in three tight clumps off-centre end matching the prior in shape."""
    from types import SimpleNamespace

    from core.diagnostics import prior_match
    from core.model import Prior
    from core.shape import AFTER, RAMP, PriorShape

    s, full = Settings.from_preset("fast"), AFTER + RAMP  # the epoch from which the weight is whole
    rng = np.random.default_rng(0)
    start = rng.normal(0, 0.2, (600, 2)) + rng.choice([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], 600) + [8.0, -6.0]
    z = torch.nn.Parameter(torch.tensor(start, dtype=torch.float32))
    model = SimpleNamespace(prior=Prior(s), parts=lambda rows: (None, z[rows]))  # a "model" whose codes are z
    shape = PriorShape(s, model, len(z), see=lambda rows: rows)
    assert shape.cost(lambda: z[:10], torch.arange(10), epoch=AFTER, g=torch.Generator()) == 0  # not before
    assert PriorShape(replace(s, shape=0.0), model, len(z), lambda r: r).cost(lambda: z, torch.arange(600), full,
                                                                              torch.Generator()) == 0
    before = prior_match(start, s.prior_std)["c2st_accuracy"]
    opt, g = torch.optim.Adam([z], lr=0.1), torch.Generator().manual_seed(0)
    for _ in range(800):
        rows = torch.randperm(len(z), generator=g)[:100]
        cost = shape.cost(lambda: z[rows], rows, epoch=full, g=g)
        opt.zero_grad()
        cost.backward()
        opt.step()
    after = prior_match(z.detach().numpy().astype(float), s.prior_std)
    assert before > 0.95 and after["c2st_accuracy"] < 0.65
    assert all(abs(after["within_sd"][k] - after["expected_within_sd"][k]) < 0.1 for k in (1, 2, 3))


def test_a_run_holds_the_prior_shape_from_its_sixth_epoch(small_demo, tmp_path, tiny_settings):
    """The shape term is part of the map's cost (logged as map_loss) from epoch AFTER + 1; the paper preset, the
    study's settings and runs from before the setting do without it."""
    import core.shape

    s = replace(tiny_settings, neighbours=False, epochs=core.shape.AFTER + 1)
    run = fit_run(tmp_path / "run", s, str(small_demo))
    assert (run.metrics()["map_loss"] > 0).tolist() == [False] * core.shape.AFTER + [True]
    assert run.config()["effective"]["shape"] == 2.0
    assert Settings.from_preset("paper").shape == 0
    assert Settings.from_preset("fast", paper_exact=True).effective().shape == 0
    assert Settings.from_run({k: v for k, v in Settings().to_dict().items() if k != "shape"}).shape == 0
