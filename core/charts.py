"""Altair charts of the app (specifications only; the pages draw them)."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import vl_convert as vlc

from .explore import CONTEXT_GREY, prior_circles, square_view

NO_SITE = "(no find-site)"
SITE_COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#eeca3b",
                "#ff9da6", "#1f3b5c"]  # no grey: figurines without a site are drawn in CONTEXT_GREY


def _colour(colours: dict[str, str], title: str = "culture", field: str = "culture") -> alt.Color:
    return alt.Color(f"{field}:N", title=title, scale=alt.Scale(domain=list(colours), range=list(colours.values())),
                     legend=alt.Legend(orient="bottom", columns=2, labelLimit=260))


def svg(chart) -> str:
    """A chart as an SVG file, whatever its number of rows (Altair's default transformer stops at 5,000)."""
    with alt.data_transformers.disable_max_rows():
        return vlc.vegalite_to_svg(chart.to_dict())


EMBEDDING_SIZE = 420  # px, the square plot of a 2-D embedding: equal scales on both axes
_SQUARE = dict(width=EMBEDDING_SIZE, height=EMBEDDING_SIZE,
               autosize=alt.AutoSizeParams(type="pad"))  # the plot itself square, axes and legend around it


def counts(table: pd.DataFrame) -> alt.Chart:
    """Images per culture, each bar split by find-site (with a legend; figurines without a site in grey)."""
    order = list(table.groupby("culture")["images"].sum().sort_values(ascending=False).index)
    t = table.assign(site=table["site"].replace("", NO_SITE))
    sites = sorted(s for s in t["site"].unique() if s != NO_SITE)
    domain = ([NO_SITE] if (t["site"] == NO_SITE).any() else []) + sites
    palette = ([CONTEXT_GREY] if domain[:1] == [NO_SITE] else []) + [SITE_COLOURS[i % len(SITE_COLOURS)]
                                                                    for i in range(len(sites))]
    return alt.Chart(t).mark_bar().encode(
        x=alt.X("images:Q", stack="zero", title="images"),
        y=alt.Y("culture:N", sort=order, title=None, axis=alt.Axis(labelLimit=240)),
        color=alt.Color("site:N", title="find-site", scale=alt.Scale(domain=domain, range=palette),
                        legend=alt.Legend(orient="bottom", columns=1, labelLimit=0)),  # every label in full
        order=alt.Order("site:N"),
        tooltip=["culture", "site", "images", alt.Tooltip("share:Q", format=".1%")],
    ).properties(height=alt.Step(36))


def axis_name(title: str) -> str:
    """A map's axis name: its title without what it was made from ("UMAP baseline (from the pixels)" -> "UMAP
    baseline")."""
    return title.split(" (")[0]


def _xy(x: str, y: str, view, title: str | None = None) -> dict:
    """x and y encodings on the view's fixed, equal-span domains."""
    (x0, x1), (y0, y1) = view
    name = axis_name(title) if title else None
    return dict(x=alt.X(x, title=f"{name} 1" if name else None, scale=alt.Scale(domain=[x0, x1], nice=False)),
                y=alt.Y(y, title=f"{name} 2" if name else None, scale=alt.Scale(domain=[y0, y1], nice=False)))


def _circles(prior_std: float, view) -> alt.Chart:
    """The prior's 1, 2 and 3 sd circles (a layer named `prior`, drawn above the points)."""
    return alt.Chart(prior_circles(prior_std), name="prior").mark_line(
        strokeDash=[4, 4], color="#5c544c", strokeWidth=1.2, opacity=0.85).encode(
        **_xy("x:Q", "y:Q", view), order="order:Q", detail="circle:N")


def _embedding(layers: list, title: str, prior_std: float | None, view) -> alt.LayerChart:
    """A square, zoomable embedding with equal scales; the prior's circles over the given layers."""
    if prior_std:
        layers.append(_circles(prior_std, view))
    return alt.layer(*layers).properties(title=title, **_SQUARE).interactive(bind_y=False, bind_x=False)


def _box(prefix: str):
    return alt.selection_interval(name=f"box_{prefix}", encodings=["x", "y"])


def scatter(points: pd.DataFrame, context: pd.DataFrame, prefix: str, title: str, colours: dict[str, str],
            highlighted: bool, prior_std: float | None = None, thumbnails: str | None = None,
            view=None, by: str = "culture") -> alt.LayerChart:
    """One embedding: grey context, coloured points (dimmed outside a selection), the prior's circles.

    `points` has id, path, culture, site, `<prefix>_x`, `<prefix>_y` and `selected`; `colours` maps the
    values of column `by` (the culture, or a saved selection) to list in the legend. With `thumbnails` (a URL
    folder holding `<id>.jpg`), hovering a point shows its picture. `view` fixes the domains
    (`explore.square_view`; default: these points). Box (`box_<prefix>`) and click (`pick_<prefix>`) selections
    are reported back to the page.
    """
    x, y = f"{prefix}_x", f"{prefix}_y"
    view = view or square_view(pd.concat([points[x], context[x]]), pd.concat([points[y], context[y]]), prior_std)
    pick = alt.selection_point(name=f"pick_{prefix}", fields=["id"], on="click")
    tips = [alt.Tooltip("culture:N"), alt.Tooltip("site:N"), alt.Tooltip("path:N", title="file")] + \
        ([alt.Tooltip(f"{by}:N", title="saved selection")] if by != "culture" else [])
    layers = []
    if len(context):
        layers.append(alt.Chart(context[[x, y]], name="context")
                      .mark_circle(size=14, color=CONTEXT_GREY, opacity=0.6).encode(**_xy(f"{x}:Q", f"{y}:Q", view)))
    opacity = alt.condition("datum.selected", alt.value(0.95), alt.value(0.18)) if highlighted else alt.value(0.75)
    size = alt.condition("datum.selected", alt.value(60), alt.value(22)) if highlighted else alt.value(22)
    chart = alt.Chart(points[list(dict.fromkeys(["id", "path", "culture", "site", by, x, y, "selected"]))],
                      name="points")
    if thumbnails:  # vega-tooltip shows a field named image as a picture; the URL is made in the browser
        chart = chart.transform_calculate(image=f"'{thumbnails}/' + datum.id + '.jpg'")
        tips.append(alt.Tooltip("image:N", title="image"))
    layers.append(chart.mark_circle().encode(
        **_xy(f"{x}:Q", f"{y}:Q", view, title), color=_colour(colours, by.replace("_", " "), by), opacity=opacity,
        size=size, tooltip=tips,
    ).add_params(_box(prefix), pick))
    return _embedding(layers, title, prior_std, view)


def density(cells: pd.DataFrame, context: pd.DataFrame, prefix: str, title: str, colours: dict[str, str],
            highlighted: bool, prior_std: float | None = None, view=None, by: str = "culture") -> alt.LayerChart:
    """One embedding of a large collection as density cells (see `explore.cells`, made with the same `by`):
    each cell in the colour of its most frequent culture (or saved selection), more opaque where it holds more
    figurines. A box selection (`box_<prefix>`) selects the figurines inside it."""
    x, y = f"{prefix}_x", f"{prefix}_y"
    both = pd.concat([cells, context])
    view = view or square_view(pd.concat([both[x], both[f"{x}2"]]), pd.concat([both[y], both[f"{y}2"]]), prior_std)
    rect = dict(**_xy(f"{x}:Q", f"{y}:Q", view, title), x2=f"{x}2:Q", y2=f"{y}2:Q")
    layers = []
    if len(context):
        layers.append(alt.Chart(context[[x, y, f"{x}2", f"{y}2"]]).mark_rect(color=CONTEXT_GREY, opacity=0.6)
                      .encode(**rect))
    strength = alt.Opacity("n:Q", scale=alt.Scale(type="log", range=[0.25, 1]), legend=None)
    opacity = alt.condition("datum.selected", alt.value(1.0), alt.value(0.15)) if highlighted else strength
    layers.append(alt.Chart(cells).mark_rect().encode(
        **rect, color=_colour(colours, f"most frequent {by.replace('_', ' ')}", by), opacity=opacity,
        tooltip=[alt.Tooltip("n:Q", title="figurines"), alt.Tooltip(f"{by}:N", title="most frequent"),
                 alt.Tooltip("share:Q", format=".0%")],
    ).add_params(_box(prefix)))
    return _embedding(layers, title, prior_std, view)


LOSSES = {"recon_loss": "reconstruction error (mean squared)", "disc_loss": "discriminator's loss (cross-entropy)",
          "gen_loss": "encoder's loss at passing for the prior", "disc_acc": "discriminator accuracy"}


def losses(metrics: pd.DataFrame) -> alt.VConcatChart:
    """The four training curves, one small chart each, by whole epoch; a nearly flat curve keeps a readable
    y span (at least 1% of its level) instead of ticks that differ in the sixth decimal."""
    first, last = int(metrics["epoch"].min()), int(metrics["epoch"].max())
    x = alt.X("epoch:Q", scale=alt.Scale(domain=[first, max(last, first + 1)], nice=False),
              axis=alt.Axis(format="d", tickMinStep=1))
    panels = []
    for col, name in LOSSES.items():
        v = metrics[col].astype(float)
        lo, hi = float(v.min()), float(v.max())
        pad = max(hi - lo, 0.01 * max(abs(lo), abs(hi)), 1e-3) * 0.15
        if hi - lo < 0.01 * max(abs(lo), abs(hi)):  # nearly flat: centre a span of 1% of the level (>= 0.001)
            mid, half = (lo + hi) / 2, max(0.005 * max(abs(lo), abs(hi)), 5e-4)
            lo, hi = mid - half, mid + half
        panels.append(alt.Chart(metrics[["epoch", col]].assign(metric=name)).mark_line(point=len(metrics) < 40).encode(
            x=x, y=alt.Y(f"{col}:Q", title=None, scale=alt.Scale(domain=[lo - pad, hi + pad], nice=False, zero=False)),
            color=alt.value(SITE_COLOURS[len(panels)]),
            tooltip=["epoch", alt.Tooltip(f"{col}:Q", format=".4f", title=name)],
        ).properties(title=name, width=330, height=150))
    return alt.vconcat(alt.hconcat(*panels[:2]), alt.hconcat(*panels[2:]))


def snapshot(codes: pd.DataFrame, colours: dict[str, str], prior_std: float | None, epoch: int) -> alt.LayerChart:
    """Latent codes of the fixed sample at one epoch, square with equal scales, the prior's circles above
    (none for a map whose codes are not matched to the prior as a whole: `prior_std` None)."""
    view = square_view(codes["x"], codes["y"], prior_std)
    pts = alt.Chart(codes).mark_circle(size=18, opacity=0.8).encode(
        **_xy("x:Q", "y:Q", view, "latent"), color=_colour(colours), tooltip=["culture", "site", "path"])
    return alt.layer(pts, *([_circles(prior_std, view)] if prior_std else [])).properties(
        title=f"latent codes at epoch {epoch}", **_SQUARE)


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


SQRT3_2 = 3 ** 0.5 / 2
READING_SIZE = 540  # px, the side of the ternary triangle


def _corner(shares) -> tuple[float, float]:
    """A three-part composition as a point of the triangle: source 0 bottom left, 1 bottom right, 2 on top."""
    a, b, c = shares
    return b + c / 2, c * SQRT3_2


def interval_region(low, high) -> list[tuple[float, float]]:
    """The compositions whose three shares each lie in their interval, as a convex polygon in the triangle
    (its corners in order). Its edges lie on the lines share_i = low_i or high_i."""
    low, high = np.clip(np.asarray(low, float), 0, 1), np.clip(np.asarray(high, float), 0, 1)
    corners = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        k = 3 - i - j
        for a in (low[i], high[i]):
            for b in (low[j], high[j]):
                p = np.empty(3)
                p[i], p[j], p[k] = a, b, 1 - a - b
                if np.all(p >= low - 1e-9) and np.all(p <= high + 1e-9):
                    corners.append(_corner(p))
    pts = np.unique(np.round(corners, 9), axis=0)
    centre = pts.mean(axis=0)
    return [tuple(p) for p in pts[np.argsort(np.arctan2(*(pts - centre).T[::-1]))]]


def _band(polygon: list[tuple[float, float]]) -> pd.DataFrame:
    """A convex polygon as x, y (bottom) and y2 (top) at its corners' x: an area mark draws it exactly."""
    pts = np.array(polygon)
    xs = np.unique(pts[:, 0])
    edges = list(zip(pts, np.roll(pts, -1, axis=0)))
    rows = []
    for x in xs:
        ys = [p[1] for p in pts if abs(p[0] - x) < 1e-9]
        ys += [p[1] + (q[1] - p[1]) * (x - p[0]) / (q[0] - p[0]) for p, q in edges
               if min(p[0], q[0]) < x < max(p[0], q[0])]
        rows.append({"x": x, "y": min(ys), "y2": max(ys)})
    return pd.DataFrame(rows)


def _group_colours(groups: list[str]) -> alt.Scale:
    return alt.Scale(domain=groups, range=["#2b2622"] + [SITE_COLOURS[i % len(SITE_COLOURS)]
                                                          for i in range(len(groups) - 1)])


def ternary(table: pd.DataFrame, sources: list[str], title: str, subtitle: list[str]) -> alt.LayerChart:
    """Each group's three shares as a point of a triangle whose corners are the source cultures, with the region
    its 95% intervals allow (shaded) and, where the answer is known, that answer as a ring. Only the groups
    shown as a reading are drawn; the title and subtitle carry the verdict into an exported file."""
    t = table[table["shown"]]
    groups = list(dict.fromkeys(t["group"]))
    pos, bands, known = [], [], []
    for g in groups:
        part = t[t["group"] == g].set_index("source").loc[sources]
        x, y = _corner(part["share"])
        pos.append({"group": g, "x": x, "y": y, "n": int(part["n"].iloc[0]),
                    **{f"s{i}": f"{s}: {part.loc[s, 'share']:.2f} [{part.loc[s, 'ci_low']:.2f}, "
                               f"{part.loc[s, 'ci_high']:.2f}]" for i, s in enumerate(sources)}})
        bands.append(_band(interval_region(part["ci_low"], part["ci_high"])).assign(group=g))
        if "known" in part and part["known"].notna().all():
            kx, ky = _corner(part["known"])
            known.append({"group": g, "x": kx, "y": ky, "what": "known answer"})
    colour = alt.Color("group:N", title="group", scale=_group_colours(groups),
                       legend=alt.Legend(orient="bottom", columns=3, labelLimit=260, symbolOpacity=1))
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[-0.08, 1.08], nice=False))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[-0.1, SQRT3_2 + 0.08], nice=False))
    grid = []
    for i in range(3):
        for v in (0.2, 0.4, 0.6, 0.8):
            for end, j in enumerate(k for k in range(3) if k != i):
                p = np.zeros(3)
                p[i], p[j] = v, 1 - v
                grid.append({"line": f"{i}-{v}", "end": end, **dict(zip("xy", _corner(p)))})
    outline = pd.DataFrame([dict(zip("xy", _corner(np.eye(3)[k % 3])), end=k) for k in range(4)])
    labels = pd.DataFrame([{"x": 0, "y": -0.05, "text": sources[0], "align": "left"},
                           {"x": 1, "y": -0.05, "text": sources[1], "align": "right"},
                           {"x": 0.5, "y": SQRT3_2 + 0.04, "text": sources[2], "align": "center"}])
    layers = [
        alt.Chart(pd.DataFrame(grid)).mark_line(color="#e4e0da", strokeWidth=1).encode(
            x=x, y=y, detail="line:N", order="end:Q"),
        alt.Chart(outline).mark_line(color="#5c544c", strokeWidth=1.5).encode(x=x, y=y, order="end:Q"),
        *[alt.Chart(b).mark_area(opacity=0.22).encode(x=x, y=y, y2="y2:Q", color=colour) for b in bands],
        alt.Chart(pd.DataFrame(pos)).mark_point(filled=True, size=110, opacity=1).encode(
            x=x, y=y, color=colour, tooltip=["group", "n", *[f"s{i}:N" for i in range(3)]]),
    ]
    if known:
        layers.append(alt.Chart(pd.DataFrame(known)).mark_point(shape="circle", size=190, strokeWidth=2,
                                                                filled=False).encode(
            x=x, y=y, color=alt.Color("group:N", scale=_group_colours(groups), legend=None),
            tooltip=["group", "what"]))
    for align in ("left", "right", "center"):
        layers.append(alt.Chart(labels[labels["align"] == align]).mark_text(
            align=align, fontSize=13, fontWeight="bold", color="#2b2622").encode(x=x, y=y, text="text:N"))
    return alt.layer(*layers).properties(
        title=_title(title, subtitle), width=READING_SIZE, height=READING_SIZE * (SQRT3_2 + 0.18) / 1.16,
        autosize=alt.AutoSizeParams(type="pad"), view=alt.ViewBackground(stroke=None))


def _title(title: str, subtitle: list[str], width: int = 78) -> alt.TitleParams:
    """A title and subtitle wrapped into lines that fit the picture (an exported file keeps them whole)."""
    import textwrap

    return alt.TitleParams(textwrap.wrap(title, width - 10), subtitle=[w for s in subtitle for w in textwrap.wrap(s, width)],
                           anchor="start", subtitleColor="#5c544c")


def bars(table: pd.DataFrame, title: str, subtitle: list[str]) -> alt.LayerChart:
    """Each group's shares as bars with their 95% intervals (and the known answer as a tick where known), one
    row per group; for any number of sources. Only the groups shown as a reading are drawn."""
    t = table[table["shown"]].assign(interval=lambda d: [f"[{lo:.2f}, {hi:.2f}]"
                                                         for lo, hi in zip(d["ci_low"], d["ci_high"])])
    sources = list(dict.fromkeys(t["source"]))
    x = alt.X("share:Q", title="share", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    y = alt.Y("source:N", title=None, sort=sources, axis=alt.Axis(labelLimit=240))
    colour = alt.Color("source:N", legend=None,
                       scale=alt.Scale(domain=sources, range=[SITE_COLOURS[i % len(SITE_COLOURS)]
                                                              for i in range(len(sources))]))
    tips = ["group", "source", "n", alt.Tooltip("share:Q", format=".2f"), "interval"]
    base = alt.Chart(t).encode(y=y)
    layers = [base.mark_bar(opacity=0.75).encode(x=x, color=colour, tooltip=tips),
              base.mark_rule(color="#2b2622", strokeWidth=1.6).encode(x="ci_low:Q", x2="ci_high:Q")]
    if "known" in t:
        layers.append(base.mark_tick(color="#e45756", thickness=3, size=18).encode(
            x="known:Q", tooltip=["group", "source", alt.Tooltip("known:Q", format=".2f", title="known answer")]))
    return alt.layer(*layers).properties(width=420, height=alt.Step(22)).facet(
        row=alt.Row("group:N", title=None, sort=list(dict.fromkeys(t["group"])),
                    header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=300))).properties(
        title=_title(title, subtitle), autosize=alt.AutoSizeParams(type="pad"))
