"""Train: configure and launch a training in the background, follow it live, stop or resume it."""
import re
import time
from dataclasses import Field, fields

import pandas as pd
import streamlit as st
import torch

from core import charts, diagnostics, jobs
from core.errors import UserError
from core.explore import culture_colours
from core.paths import RUNS
from core.runs import Run, run_name
from core.settings import PRESETS, Settings
from pages.shared import active_dataset, data_root, is_demo, plain, prior_metrics, runs

st.title("Train")
LONG = 3600  # seconds: a training estimated to take longer is launched only after the user confirms


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


def widget(where, f: Field, base: Settings):
    """The widget of one setting, made from its metadata (core.settings): a check-box, a choice or a number in its
    range, starting at the preset's value; no key, so that another preset starts it afresh."""
    m, value, kind = f.metadata, getattr(base, f.name), str(f.type).split(" |")[0]
    label, help_ = m["label"], m["help"]
    if kind == "bool":
        if m["group"] == "basic":
            help_ += (f" Measured default: {'on' if value else 'off'} for this preset, chosen on the demo collection "
                      "(bench/RESULTS.md says on what each default was measured).")
        return where.checkbox(label, value=value, help=help_)
    if f.name == "device":
        devices = device_options()
        return where.selectbox(label, list(devices), format_func=devices.get, help=help_)
    if isinstance(m["choices"], dict):
        keys = list(m["choices"])
        return where.radio(label, keys, index=keys.index(value), horizontal=True, help=help_,
                           format_func=lambda k: f"{k}: {m['choices'][k]}")
    if m["choices"] or m["options"]:
        keys = list(m["choices"] or m["options"])
        return where.selectbox(label, keys, index=keys.index(value), help=help_)
    lo, hi = m["range"]
    if kind == "int":
        return where.number_input(label, int(lo), int(hi), value, help=help_)
    return where.number_input(label, float(lo), float(hi), None if value is None else float(value), help=help_,
                              format="%.5f" if lo < 0.01 else "%.2f")


def widgets(base: Settings, chosen: list[Field], columns) -> dict:
    """The widgets of these settings, one per column, in rows of as many as `columns` (a number or a list)."""
    values, width = {}, columns if isinstance(columns, int) else len(columns)
    for i in range(0, len(chosen), width):
        for col, f in zip(st.columns(columns), chosen[i:i + width]):
            values[f.name] = widget(col, f, base)
    return values


def settings_form() -> tuple[str, Settings] | None:
    """The launch form, made from the settings' own list: the choices that change the reading up front, the expert
    ones folded; returns (run name, settings) when submitted with valid settings."""
    preset = st.segmented_control("Preset", list(PRESETS), default="fast", key="preset",
                                  help=Settings.__dataclass_fields__["preset"].metadata["help"])
    base = Settings.from_preset(preset or "fast")
    est = jobs.estimate(base, len(ds.items), runs())
    if est:
        st.caption(f"{base.preset}, {base.epochs} epochs at {base.image_size} px on these {len(ds.items):,} "
                   f"photographs: about {jobs.duration(est[0])} of training on this machine while nothing else "
                   f"runs on it ({plain(est[1])}); longer while other work shares it. Over an hour, the launch asks "
                   "first.")
    made_for = (base.preset, str(data_root()))  # a run is named after its dataset, preset and start
    if "run_name" not in st.session_state or st.session_state.get("run_name_for") != made_for:
        folder = "demo" if is_demo(data_root()) else re.sub(r"[^\w-]+", "-", data_root().name).strip("-")[:40]
        st.session_state["run_name"] = f"{folder or 'data'}-{base.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        st.session_state["run_name_for"] = made_for
    basic = [f for f in fields(Settings) if f.metadata["group"] == "basic"]
    described = [f for f in basic if isinstance(f.metadata["choices"], dict)]  # shown with what each choice means
    switches = [f for f in basic if f.type == "bool"]
    numbers = [f for f in basic if f not in described and f not in switches]
    with st.form("launch", enter_to_submit=False):  # launched by its button only, never by Enter in a box
        c = st.columns([3, 4])
        name = c[0].text_input("Run name", key="run_name")
        with c[1]:
            values = widgets(base, numbers, len(numbers))
        values |= widgets(base, described, 1)
        values |= widgets(base, switches, 3)
        with st.expander("Expert settings: the network and its optimisers"):
            values |= widgets(base, [f for f in fields(Settings) if f.metadata["group"] == "expert"], 4)
        if not st.form_submit_button("Launch training", type="primary"):
            return None
    try:
        return name.strip(), Settings.from_preset(preset or "fast", **values)
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
    if st_.get("note"):
        st.info(plain(st_["note"]))
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
