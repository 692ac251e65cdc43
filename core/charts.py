"""Altair charts of the app (specifications only; the pages draw them)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import vl_convert as vlc

from .explore import CONTEXT_GREY, prior_circles


def _colour(colours: dict[str, str], title: str = "culture") -> alt.Color:
    return alt.Color("culture:N", title=title, scale=alt.Scale(domain=list(colours), range=list(colours.values())),
                     legend=alt.Legend(orient="bottom", columns=2, labelLimit=260))


def svg(chart) -> str:
    """A chart as an SVG file, whatever its number of rows (Altair's default transformer stops at 5,000)."""
    with alt.data_transformers.disable_max_rows():
        return vlc.vegalite_to_svg(chart.to_dict())


def counts(table: pd.DataFrame, colours: dict[str, str]) -> alt.Chart:
    """Images per culture, stacked by site, largest culture first."""
    order = list(table.groupby("culture")["images"].sum().sort_values(ascending=False).index)
    return alt.Chart(table).mark_bar().encode(
        x=alt.X("images:Q", stack="zero", title="images"),
        y=alt.Y("culture:N", sort=order, title=None, axis=alt.Axis(labelLimit=240)),
        color=_colour(colours),
        detail="site:N",
        tooltip=["culture", "site", "images", alt.Tooltip("share:Q", format=".1%")],
    ).properties(height=alt.Step(36))


def _embedding(layers: list, title: str, prior_std: float | None) -> alt.LayerChart:
    """The prior's circles under the given layers, zoomable, titled."""
    if prior_std:
        layers.insert(0, alt.Chart(prior_circles(prior_std)).mark_line(strokeDash=[4, 4], color="#8a8178",
                                                                       opacity=0.7)
                      .encode(x=alt.X("x:Q"), y=alt.Y("y:Q"), order="order:Q", detail="circle:N"))
    return alt.layer(*layers).properties(title=title, height=460).interactive(bind_y=False, bind_x=False)


def _box(prefix: str):
    return alt.selection_interval(name=f"box_{prefix}", encodings=["x", "y"])


def scatter(points: pd.DataFrame, context: pd.DataFrame, prefix: str, title: str, colours: dict[str, str],
            highlighted: bool, prior_std: float | None = None, thumbnails: str | None = None) -> alt.LayerChart:
    """One embedding: grey context, coloured points (dimmed outside a selection), the prior's circles.

    `points` has id, path, culture, site, `<prefix>_x`, `<prefix>_y` and `selected`. With `thumbnails`
    (a URL folder holding `<id>.jpg`), hovering a point shows its picture. Box (`box_<prefix>`) and
    click (`pick_<prefix>`) selections are reported back to the page.
    """
    x, y = f"{prefix}_x", f"{prefix}_y"
    pick = alt.selection_point(name=f"pick_{prefix}", fields=["id"], on="click")
    tips = [alt.Tooltip("culture:N"), alt.Tooltip("site:N"), alt.Tooltip("path:N", title="file")]
    layers = []
    if len(context):
        layers.append(alt.Chart(context[[x, y]]).mark_circle(size=14, color=CONTEXT_GREY, opacity=0.6)
                      .encode(x=f"{x}:Q", y=f"{y}:Q"))
    opacity = alt.condition("datum.selected", alt.value(0.95), alt.value(0.18)) if highlighted else alt.value(0.75)
    size = alt.condition("datum.selected", alt.value(60), alt.value(22)) if highlighted else alt.value(22)
    chart = alt.Chart(points[["id", "path", "culture", "site", x, y, "selected"]])
    if thumbnails:  # vega-tooltip shows a field named image as a picture; the URL is made in the browser
        chart = chart.transform_calculate(image=f"'{thumbnails}/' + datum.id + '.jpg'")
        tips.append(alt.Tooltip("image:N", title="image"))
    layers.append(chart.mark_circle().encode(
        x=alt.X(f"{x}:Q", title=f"{title} 1"), y=alt.Y(f"{y}:Q", title=f"{title} 2"),
        color=_colour(colours), opacity=opacity, size=size, tooltip=tips,
    ).add_params(_box(prefix), pick))
    return _embedding(layers, title, prior_std)


def density(cells: pd.DataFrame, context: pd.DataFrame, prefix: str, title: str, colours: dict[str, str],
            highlighted: bool, prior_std: float | None = None) -> alt.LayerChart:
    """One embedding of a large collection as density cells (see `explore.cells`): each cell in its most
    frequent culture's colour, more opaque where it holds more figurines. A box selection (`box_<prefix>`)
    selects the figurines inside it."""
    x, y = f"{prefix}_x", f"{prefix}_y"
    rect = dict(x=alt.X(f"{x}:Q", title=f"{title} 1"), x2=f"{x}2:Q", y=alt.Y(f"{y}:Q", title=f"{title} 2"),
                y2=f"{y}2:Q")
    layers = []
    if len(context):
        layers.append(alt.Chart(context[[x, y, f"{x}2", f"{y}2"]]).mark_rect(color=CONTEXT_GREY, opacity=0.6)
                      .encode(**rect))
    strength = alt.Opacity("n:Q", scale=alt.Scale(type="log", range=[0.25, 1]), legend=None)
    opacity = alt.condition("datum.selected", alt.value(1.0), alt.value(0.15)) if highlighted else strength
    layers.append(alt.Chart(cells).mark_rect().encode(
        **rect, color=_colour(colours, "most frequent culture"), opacity=opacity,
        tooltip=[alt.Tooltip("n:Q", title="figurines"), alt.Tooltip("culture:N", title="most frequent"),
                 alt.Tooltip("share:Q", format=".0%")],
    ).add_params(_box(prefix)))
    return _embedding(layers, title, prior_std)


def losses(metrics: pd.DataFrame) -> alt.Chart:
    """The four training curves, one small chart each, by epoch."""
    cols = {"recon_loss": "reconstruction (MSE)", "disc_loss": "discriminator (BCE)", "gen_loss": "generator (BCE)",
            "disc_acc": "discriminator accuracy"}
    long = metrics.melt("epoch", list(cols), var_name="metric").replace({"metric": cols})
    return alt.Chart(long).mark_line(point=len(metrics) < 40).encode(
        x=alt.X("epoch:Q"), y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("metric:N", legend=None), tooltip=["epoch", "metric", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=330, height=150).facet(facet=alt.Facet("metric:N", title=None, sort=list(cols.values())),
                                                columns=2).resolve_scale(y="independent")


def snapshot(codes: pd.DataFrame, colours: dict[str, str], prior_std: float, epoch: int) -> alt.LayerChart:
    """Latent codes of the fixed sample at one epoch, with the prior's circles."""
    circles = alt.Chart(prior_circles(prior_std)).mark_line(strokeDash=[4, 4], color="#8a8178").encode(
        x="x:Q", y="y:Q", order="order:Q", detail="circle:N")
    pts = alt.Chart(codes).mark_circle(size=18, opacity=0.8).encode(
        x=alt.X("x:Q", title="latent 1"), y=alt.Y("y:Q", title="latent 2"), color=_colour(colours),
        tooltip=["culture", "site", "path"])
    return alt.layer(circles, pts).properties(title=f"latent codes at epoch {epoch}", height=380)


def heatmap(table: pd.DataFrame, title: str) -> alt.LayerChart:
    """Group x source-culture shares, with the value and its 95% interval in each cell; withheld cells grey."""
    t = table.assign(label=[f"{v:.2f}" if shown else "?" for v, shown in zip(table["share"], table["shown"])],
                     interval=[f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(table["ci_low"], table["ci_high"])],
                     reading=[("too few figurines" if small else "shown") if shown else
                              ("too few figurines" if small else "withheld: cannot tell")
                              for shown, small in zip(table["shown"], table["too_small"])])
    groups = list(dict.fromkeys(t["group"]))
    tips = ["group", "source", "n", alt.Tooltip("share:Q", format=".3f"), "interval", "reading"]
    if "known" in t:
        tips.append(alt.Tooltip("known:Q", format=".2f", title="known answer"))
    base = alt.Chart(t).encode(
        x=alt.X("source:N", title=None, axis=alt.Axis(orient="top", labelAngle=0, labelLimit=0, labelOverlap=False)),
        y=alt.Y("group:N", sort=groups, title=None, axis=alt.Axis(labelLimit=0)))
    cells = base.mark_rect(stroke="white").encode(
        color=alt.condition("datum.shown", alt.Color("share:Q", scale=alt.Scale(domain=[0, 1], scheme="oranges"),
                                                     title="share"), alt.value("#dcd8d3")),
        tooltip=tips)
    text = base.mark_text(fontSize=12).encode(
        text="label:N", color=alt.condition("datum.shown && datum.share > 0.55", alt.value("white"), alt.value("#2b2622")))
    return alt.layer(cells, text).properties(title=title, width=alt.Step(190), height=alt.Step(30))
