"""Train: configure and launch a training in the background, follow it live, stop or resume it."""
import re
import time

import pandas as pd
import streamlit as st
import torch

from core import charts, diagnostics, jobs
from core.errors import UserError
from core.explore import culture_colours
from core.paths import RUNS
from core.runs import Run, run_name
from core.settings import PRESETS, STYLES, Settings
from core.train import NEIGHBOURS
from pages.common import active_dataset, app_page, data_root, is_demo, plain, prior_metrics, runs

app_page("pages/train.py")

st.title("Train")
LONG = 3600  # seconds: a training estimated to take longer is launched only after the user confirms


def _default(on: bool) -> str:
    """Marks a check-box's preset value as a measured default, saying on what it was measured."""
    return (f"Measured default: {'on' if on else 'off'} for this preset, chosen on the demo collection "
            "(bench/RESULTS.md says on what each default was measured).")


def device_options() -> dict[str, str]:
    """Device choices with what they mean on this machine."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    mps = torch.backends.mps.is_available()
    opts = {"auto": f"auto ({gpu or ('Apple MPS' if mps else 'CPU')})", "cpu": "CPU"}
    if gpu:
        opts["cuda"] = gpu
    if mps:
        opts["mps"] = "Apple MPS"
    return opts


def settings_form() -> tuple[str, Settings] | None:
    """The launch form, the choices that change the reading up front and the expert ones folded; returns
    (run name, settings) when submitted with valid settings."""
    preset = st.segmented_control("Preset", list(PRESETS), default="fast", key="preset",
                                  help="fast: a small convolutional AAE at 64 px, minutes on a CPU; paper: the "
                                       "study's dense 1000-1000-2 AAE at 256 px, for a GPU")
    base = Settings.from_preset(preset or "fast")
    est = jobs.estimate(base, len(ds.items), runs())
    if est:
        st.caption(f"{base.preset}, {base.epochs} epochs at {base.image_size} px on these {len(ds.items):,} "
                   f"photographs: about {jobs.duration(est[0])} on this machine ({plain(est[1])}). Over an hour, "
                   "the launch asks first.")
    made_for = (base.preset, str(data_root()))  # a run is named after its dataset, preset and start
    if "run_name" not in st.session_state or st.session_state.get("run_name_for") != made_for:
        folder = "demo" if is_demo(data_root()) else re.sub(r"[^\w-]+", "-", data_root().name).strip("-")[:40]
        st.session_state["run_name"] = f"{folder or 'data'}-{base.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        st.session_state["run_name_for"] = made_for
    sizes = [16, 32, 64, 128, 256]
    with st.form("launch", enter_to_submit=False):  # launched by its button only, never by Enter in a box
        c = st.columns([3, 1, 1, 2])
        name = c[0].text_input("Run name", key="run_name")
        epochs = c[1].number_input("Epochs", 1, 10_000, base.epochs,
                                   help="passes over the collection; the losses below show when the map has "
                                        "settled")
        image_size = c[2].selectbox("Image size (px)", sizes, index=sizes.index(base.image_size),
                                    help="the detail the model sees: larger shows finer relief and trains "
                                         "slower (64: minutes on a CPU; 256: a GPU)")
        devices = device_options()
        device = c[3].selectbox("Device", list(devices), format_func=devices.get)
        style = st.radio("What counts as style", list(STYLES), index=list(STYLES).index(base.style), horizontal=True,
                         format_func=lambda k: f"{k}: {STYLES[k]}",
                         help="form suits terracottas: local clay, firing and coatings, shared by every figurine "
                              "made in one place, are not read as influence")
        c = st.columns(3)
        guided = c[0].checkbox("Guided by source labels", value=base.guided,
                               help="The map gives each source culture its own region, learned from the labels of "
                                    f"all but {base.label_holdout:.0%} of each source; the map's figures are then "
                                    "measured on those unlabelled alone. The numbers on Influence are read in the "
                                    "descriptor space whenever it passes its checks best, so they rarely change. "
                                    f"{_default(base.guided)}")
        balanced = c[1].checkbox("Each culture equally often", value=base.balanced,
                                 help="Small cultures are shown as often as large ones, so a large culture does not "
                                      "shape the map alone (the study's data was 70% one culture). The shares on "
                                      "Influence already correct for culture sizes. " + _default(base.balanced))
        local = c[2].checkbox("Tell it which are local", value=base.local,
                              help="What only the target culture has (local clay, bases, coatings) is not given a "
                                   "place in the map, so its figurines sit nearer the sources whose models they "
                                   "follow; the map's figures are then measured among the sources. "
                                   + _default(base.local))
        c = st.columns(3)
        flatten = c[0].checkbox("Flatten backgrounds", value=base.background == "flatten",
                                help="Studio backgrounds become one neutral grey, so neither the map nor the "
                                     "descriptor space groups figurines by how they were photographed (dark and "
                                     "graded museum backdrops are not all removed yet). "
                                     + _default(base.background == "flatten"))
        augment = c[1].checkbox("Vary each view", value=base.augment,
                                help="Each figurine is shown as another photograph might show it (mirrored, "
                                     "closer, tilted, partly hidden), so its place in the map does not hang on how "
                                     "it was photographed; it changes the map, not the numbers read in the "
                                     "descriptor space. " + _default(base.augment))
        neighbours = c[2].checkbox("Keep look-alikes together", value=base.neighbours,
                                   help="Figurines that look alike in their pixels are kept near each other in the "
                                        "map, as UMAP does, so target figurines sit beside the sources they follow; "
                                        f"it starts after epoch {NEIGHBOURS['after']}. It changes the map, not the "
                                        "numbers read in the descriptor space. " + _default(base.neighbours))
        with st.expander("Expert settings: the network and its optimisers"):
            c = st.columns(4)
            lr = c[0].number_input("Reconstruction learning rate", 1e-6, 1.0, base.lr, format="%.5f",
                                   help="how fast the autoencoder learns to redraw figurines; too high and the map "
                                        "jumps between epochs")
            disc_lr = c[1].number_input("Critic learning rate", 1e-6, 1.0, base.disc_lr, format="%.5f",
                                        help="how fast the discriminator learns to tell codes from prior draws; it "
                                             "keeps the map shaped like the prior, so distances compare")
            gen_lr = c[2].number_input("Prior-matching learning rate", 1e-6, 1.0, base.gen_lr, format="%.5f",
                                       help="how hard the encoder is pushed toward the prior: higher fills the "
                                            "circles evenly at the cost of faithful reconstructions")
            adv_beta1 = c[3].number_input("Adversarial momentum (Adam beta1)", 0.0, 0.999, base.adv_beta1,
                                          help="momentum of both adversarial steps; 0.5 keeps them stable")
            c = st.columns(4)
            prior = c[0].selectbox("Prior", ["gaussian", "mixture"],
                                   help="gaussian: one cloud; mixture: Gaussians on a circle of radius 2 sd, which "
                                        "pulls the figurines into separate groups (a guided run always uses one "
                                        "per source culture)")
            prior_std = c[1].number_input("Prior sd", 0.01, 1000.0, base.prior_std,
                                          help="the map's scale (its circles on Explore): units, not neighbours")
            latent_dim = c[2].number_input("Latent size", 1, 512, base.latent_dim,
                                           help="dimensions of each code; Explore draws the first two, so 2 gives "
                                                "a map read whole")
            width = c[3].number_input("Autoencoder width", 1, 100_000, base.width,
                                      help="units (dense) or first-layer channels (conv): more capacity sees finer "
                                           "differences, trains slower and can memorise a small collection")
            c = st.columns(4)
            disc_width = c[0].number_input("Critic width", 1, 100_000, base.disc_width,
                                           help="the discriminator's hidden units")
            disc_noise = c[1].number_input("Critic input noise (sd)", 0.0, 10.0, base.disc_noise,
                                           help="blurs the critic's view a little so it cannot win outright, which "
                                                "keeps training stable")
            batch = c[2].number_input("Batch size", 2, 4096, base.batch_size,
                                      help="figurines per training step: mostly speed and memory")
            seed = c[3].number_input("Seed", 0, 2**31 - 1, base.seed,
                                     help="the random start: train two seeds to see how much of a map is chance")
            c = st.columns(4)
            snapshot_every = c[0].number_input("Snapshot every (epochs)", 1, 1000, base.snapshot_every,
                                               help="how often this page records the map of a fixed sample")
            checkpoint_every = c[1].number_input("Checkpoint every (epochs)", 1, 1000, base.checkpoint_every,
                                                 help="how often a resumable checkpoint is written; Explore opens "
                                                      "a run at its latest")
            clusters = c[2].number_input("Cluster heads (0: none)", 0, 64, base.clusters,
                                         help="K > 0 draws the map as K learned cluster heads plus each figurine's "
                                              "style (Makhzani et al. 2015, section 6): groups sit apart, and "
                                              "distances are read within a cluster; guided runs get one per source")
            paper_exact = c[3].checkbox("Paper-exact", help="the study's settings exactly, stabilisers off: to "
                                                            "reproduce its figures, not for new readings")
        if not st.form_submit_button("Launch training", type="primary"):
            return None
    try:
        return name.strip(), Settings.from_preset(
            preset or "fast", image_size=image_size, epochs=int(epochs), batch_size=int(batch), device=device,
            lr=lr, disc_lr=disc_lr, gen_lr=gen_lr, adv_beta1=adv_beta1, prior_std=prior_std,
            latent_dim=int(latent_dim), width=int(width), disc_noise=disc_noise, balanced=balanced, guided=guided,
            local=local, neighbours=neighbours, augment=augment, paper_exact=paper_exact,
            background="flatten" if flatten else "keep",
            seed=int(seed),
            prior=prior, style=style, clusters=int(clusters), disc_width=int(disc_width), snapshot_every=int(snapshot_every),
            checkpoint_every=int(checkpoint_every))
    except UserError as e:
        st.error(plain(str(e)))
        return None


def launch(name: str, settings: Settings) -> None:
    try:
        run = jobs.launch(RUNS / run_name(name), settings, str(data_root()))
    except UserError as e:
        st.error(plain(str(e)))
        return
    status = run.status()
    if status.get("state") not in ("running", "done"):
        st.error(f"The training did not start: {plain(status.get('message') or jobs.log_tail(run, 3) or 'no reason recorded')}")
        return
    st.session_state["watch"] = run.name
    del st.session_state["run_name"]  # the next launch gets a fresh name
    st.rerun()


def launch_or_ask(name: str, settings: Settings) -> None:
    """Launch, unless the training would take over an hour here: then ask first."""
    est = jobs.estimate(settings, len(ds.items), runs())
    if est and est[0] > LONG:
        st.session_state["pending"] = (name, settings, est)
    else:
        launch(name, settings)


def confirm_long(name: str, settings: Settings, est: tuple[float, str]) -> None:
    st.warning(f"This training would take about **{jobs.duration(est[0])}** on this machine ({plain(est[1])}). "
               "Launch it anyway?")
    c = st.columns([1, 1, 4])
    if c[0].button("Launch anyway", type="primary"):
        del st.session_state["pending"]
        launch(name, settings)
    if c[1].button("Cancel"):
        del st.session_state["pending"]
        st.rerun()


def eta(metrics: pd.DataFrame, status: dict) -> str:
    if not len(metrics):
        return "—"
    per_epoch = metrics["seconds"].tail(5).mean()
    left = max(0, status.get("epochs", 0) - int(metrics["epoch"].max())) * per_epoch
    return jobs.duration(left)


def run_view(run: Run) -> None:
    """Progress, losses and latent snapshots of one run; stop and resume."""
    st_ = run.status()
    state, epoch, total = st_.get("state"), int(st_.get("epoch", 0)), int(st_.get("epochs") or 0)
    metrics = run.metrics()
    st.subheader(f"Run {plain(run.name)}")
    try:
        cfg = run.config()
    except UserError as e:  # damaged while it was being watched
        st.error(plain(str(e)))
        return
    if state == "failed":
        st.error(f"This run failed: {plain(st_.get('message', 'no reason recorded'))}")
        tail = jobs.log_tail(run)
        if tail:
            with st.expander("The end of its log"):
                st.code(tail, language=None)
    elif state in ("stopped", "interrupted"):
        st.warning(f"{state.capitalize()} after epoch {epoch}: {plain(st_.get('message', ''))}")
    elif state == "done":
        st.success(f"Finished {epoch} epochs on {plain(cfg.get('device', '?'))}.")
    c = st.columns(4)
    c[0].metric("State", state)
    c[1].metric("Epoch", f"{epoch} / {total}" if total else str(epoch))
    c[2].metric("Seconds per epoch", f"{metrics['seconds'].tail(5).mean():.1f}" if len(metrics) else "—")
    c[3].metric("Time left", eta(metrics, st_) if state == "running" else "—")
    if state == "running" and total:
        st.progress(epoch / total, text=f"epoch {epoch} of {total} on {plain(cfg.get('device', '?'))}")
    b = st.columns([1, 1, 4])
    if state == "running" and b[0].button("Stop training", key=f"stop-{run.name}"):
        run.request_stop()
        st.toast("Stop requested: the run stops after the current batch, with a checkpoint.")
    if state in ("stopped", "interrupted", "failed") and run.model_path.is_file() and \
            b[0].button("Resume", key=f"resume-{run.name}"):
        try:
            jobs.launch(run.dir, resume=True)
        except UserError as e:
            st.error(plain(str(e)))
        else:
            st.rerun()
    if run.model_path.is_file() and b[1].button("Open in Explore", key=f"open-{run.name}"):
        st.session_state["run"] = run.name
        st.switch_page("pages/explore.py")
    if len(metrics):
        st.altair_chart(charts.losses(metrics), width="stretch")
        st.caption("Discriminator accuracy near 0.5 means the codes pass for prior samples; how the photographs' "
                   "own codes sit in the prior is measured under the latent snapshot below.")
    snaps = run.snapshots()
    sample = run.snapshot_sample()
    if snaps and len(sample):
        epochs = sorted(snaps)
        key = f"snap-{run.name}"
        if st.session_state.get(key) in (None, st.session_state.get(f"{key}-newest")) or \
                st.session_state[key] not in epochs:  # on the newest snapshot: follow the next one
            st.session_state[key] = epochs[-1]
        st.session_state[f"{key}-newest"] = epochs[-1]
        pick = st.select_slider("Latent snapshot at epoch", epochs, key=key) if len(epochs) > 1 else epochs[0]
        codes = sample.assign(x=snaps[pick][:, 0], y=snaps[pick][:, 1] if snaps[pick].shape[1] > 1 else 0.0)
        s = cfg["settings"]
        st.altair_chart(charts.snapshot(codes, culture_colours(sample["culture"]),
                                        None if s.get("clusters") else s["prior_std"], pick), width="content")
        if s.get("clusters"):
            st.caption("This run's map places each figurine at a learned cluster head plus its style code; the prior "
                       "belongs to the style part, and the Influence page measures how it matches.")
            return
        whole = pick == epochs[-1] and state == "done" and run.encodings_path.is_file() and \
            run.encodings_path.stat().st_mtime_ns >= run.model_path.stat().st_mtime_ns
        source = run.encodings_path if whole else run.snapshots_dir / f"epoch_{pick:04d}.npy"
        p = prior_at(str(run.dir), pick, whole, source.stat().st_mtime_ns)
        st.caption(f"How the photographs' own codes sit in the prior at epoch {pick}, measured on " + (
            f"all {len(enc_codes(str(run.dir), source.stat().st_mtime_ns)):,} photographs, as on the Influence page:"
            if whole else f"the {len(sample):,} photographs drawn above (on all of them once the run is done):"))
        prior_metrics(p, st.columns(4))


@st.cache_data(max_entries=8, show_spinner=False)
def enc_codes(run_dir: str, encodings_mtime: int):
    """The map's codes of every photograph, as the run's encodings hold them."""
    return pd.read_parquet(Run(run_dir).encodings_path, columns=["aae_x", "aae_y"]).to_numpy()


@st.cache_data(max_entries=16, show_spinner="Measuring the codes against the prior…")
def prior_at(run_dir: str, epoch: int, whole: bool, source_mtime: int) -> dict:
    """`diagnostics.prior_of` the codes of one snapshot, or of every photograph (the encodings) when `whole`."""
    run = Run(run_dir)
    codes = enc_codes(run_dir, source_mtime) if whole else run.snapshots()[epoch]
    return diagnostics.prior_of(codes, Settings.from_run(run.config()["effective"]))


def past_runs() -> str | None:
    """Every run, as of now; the name of the run to show below the table."""
    rows = []
    for r in runs():
        st_, cfg = r.status(), r.config()
        s = cfg.get("settings", {})
        rows.append({"run": r.name, "state": st_.get("state"), "epoch": st_.get("epoch", 0),
                     "preset": s.get("preset"), "image size": s.get("image_size"), "epochs": s.get("epochs"),
                     "style": s.get("style", "colour"), "guided": s.get("guided", False),
                     "local": s.get("local", False), "balanced": s.get("balanced"), "data": cfg.get("data"),
                     "device": cfg.get("device")})
    if not rows:
        st.info("No runs yet: launch one above.")
        return None
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    names = [r["run"] for r in rows]
    if st.session_state.get("watch") not in names:
        st.session_state["watch"] = names[0]
    return st.selectbox("Show run", names, key="watch")


def runs_section() -> None:
    """The runs table and the chosen run; both refresh every 2 s while a training runs (see below)."""
    watch = past_runs()
    if watch and Run(RUNS / watch).exists():
        run = Run(RUNS / watch)
        running = run.status().get("state") == "running"
        run_view(run)
        if st.session_state.pop("was_running", None) == watch and not running:
            st.rerun()  # the run ended: redraw the page once, without the timer
        if running:
            st.session_state["was_running"] = watch


root = data_root()
ds = active_dataset()  # draws the demo on first use; says why a chosen folder cannot be used
if ds is None:
    st.stop()
st.caption(f"Dataset: {'the demo' if is_demo(root) else plain(root)}")
busy = {d: jobs.active(d) for d in ("cuda", "mps", "cpu")}
for d, r in busy.items():
    if r is not None:
        st.info(f"Training now on the {d}: run **{plain(r.name)}**. One training runs at a time per device.")
        st.session_state.setdefault("watch", r.name)
with st.expander("New training", expanded=not any(busy.values())):
    submitted = settings_form()
if submitted:  # outside the expander: a refusal must show even when another training collapsed it
    launch_or_ask(*submitted)
if "pending" in st.session_state:
    confirm_long(*st.session_state["pending"])
st.divider()
st.fragment(runs_section, run_every=2 if any(busy.values()) else None)()
