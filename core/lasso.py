"""An embedding drawn with Plotly, whose lasso selects figurines along any curve (Vega-Lite has boxes and
clicks only); the figure only, the page draws it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .charts import EMBEDDING_SIZE, axis_name
from .explore import CONTEXT_GREY


def scatter(points: pd.DataFrame, context: pd.DataFrame, prefix: str, title: str, colours: dict[str, str],
            highlighted: bool, prior_std: float | None, view, by: str = "culture") -> go.Figure:
    """As `charts.scatter`: grey context, one trace per value of `by` in `colours` (legend order), points
    dimmed outside a selection (Plotly's own `selectedpoints`), the prior's circles, equal scales over `view`. Each point carries its row id
    as `customdata[0]` (see `selected_ids`); the lasso is the default drag."""
    x, y = f"{prefix}_x", f"{prefix}_y"
    fig = go.Figure()
    if len(context):
        fig.add_trace(go.Scattergl(x=context[x], y=context[y], mode="markers", hoverinfo="skip", showlegend=False,
                                   marker=dict(size=4, color=CONTEXT_GREY, opacity=0.6), name="filtered out"))
    for value, colour in colours.items():
        p = points[points[by] == value]
        if not len(p):
            continue
        fig.add_trace(go.Scattergl(
            x=p[x], y=p[y], mode="markers", name=str(value), marker=dict(color=colour, size=6, opacity=0.75),
            customdata=np.column_stack([p["id"], p["culture"], p["site"].replace("", "—"), p["path"]]),
            hovertemplate="%{customdata[1]} · %{customdata[2]}<br>%{customdata[3]}<extra></extra>",
            selectedpoints=np.flatnonzero(p["selected"].to_numpy(bool)) if highlighted else None,
            selected=dict(marker=dict(size=9, opacity=0.95)), unselected=dict(marker=dict(opacity=0.18))))
    for k in ((1, 2, 3) if prior_std else ()):
        r = k * prior_std
        fig.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, layer="above",
                      line=dict(color="#5c544c", width=1.2, dash="dash"))
    fig.update_layout(
        title=dict(text=title), dragmode="lasso", width=EMBEDDING_SIZE + 160, height=EMBEDDING_SIZE + 140,
        margin=dict(l=50, r=10, t=40, b=40), hovermode="closest", clickmode="event+select",
        legend=dict(orientation="h", yanchor="top", y=-0.12, x=0, title=dict(text=by.replace("_", " ")),
                    itemsizing="constant"),
        xaxis=dict(range=view[0], title=f"{axis_name(title)} 1", zeroline=False, constrain="domain"),
        yaxis=dict(range=view[1], title=f"{axis_name(title)} 2", zeroline=False, scaleanchor="x", scaleratio=1,
                   constrain="domain"))
    return fig


def selected_ids(selection: dict) -> np.ndarray | None:
    """Row ids of the points a Plotly selection holds (lasso, box or clicks); None if it holds none."""
    ids = [int(p["customdata"][0]) for p in selection.get("points") or []
           if isinstance(p, dict) and isinstance(p.get("customdata"), (list, tuple)) and p["customdata"]]
    return np.unique(ids).astype(int) if ids else None
