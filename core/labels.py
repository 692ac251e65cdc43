"""Targets and sources, and which source labels a guided model may see (DESIGN: "Sources, targets and labels").

The target culture is the one whose influences are asked about; every other culture is a source. A guided
run (`Settings.guided`) is shown the labels of most source figurines; a fixed share of each source culture
stays unlabelled, with the targets, so that what the run is said to separate, and the influence estimated
from it, is measured on figurines whose labels it never saw.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

TARGET = "Hellenistic Babylonian"
FEW = 10  # photographs: fewer in a culture, or in a group of the target culture, are too few to say anything of


def target_culture(cultures: pd.Series, sites: pd.Series) -> str:
    """The culture whose groups are explained: Hellenistic Babylonian, else the one with find-sites."""
    if (cultures == TARGET).any():
        return TARGET
    with_sites = cultures[sites != ""]
    return with_sites.value_counts().index[0] if len(with_sites) else cultures.value_counts().index[0]


def has_target(items: pd.DataFrame) -> bool:
    """Whether a culture is asked about: Hellenistic Babylonian, or one with find-sites (else `target_culture`
    falls back on the largest)."""
    return bool((items["culture"] == TARGET).any() or (items["site"] != "").any())


def roles(items: pd.DataFrame) -> tuple[str, list[str], str]:
    """The target culture, the source cultures, and why that culture is the target: "named" (Hellenistic
    Babylonian), "sites" (the only culture with find-sites), "most sites" (the one with most photographs in
    find-site folders, where several have them) or "largest" (no culture is named so or has find-sites)."""
    target = target_culture(items["culture"], items["site"])
    with_sites = items.loc[items["site"] != "", "culture"].nunique()
    why = ("named" if target == TARGET else "largest" if not with_sites else "sites" if with_sites == 1
           else "most sites")
    return target, sorted(c for c in items["culture"].unique() if c != target), why


def doubts(items: pd.DataFrame) -> list[str]:
    """What in a folder's labels suggests that it is not the folder meant, or that the culture taken as the one
    asked about may not be the one meant, in words (none for a folder laid out as DESIGN says)."""
    target, _, why = roles(items)
    said = []
    counts = items["culture"].value_counts()
    few = counts[counts < FEW]
    if len(few):
        said.append(f"{', '.join(f'{c} ({n})' for c, n in few.items())} {'has' if len(few) == 1 else 'have'} "
                    f"fewer than {FEW} photographs, too few to learn from or compare with: is this the folder whose "
                    "subfolders are the cultures?")
    with_sites = items.loc[items["site"] != "", "culture"].value_counts()
    if why == "most sites":
        *most, last = with_sites.index
        said.append(f"{', '.join(most)} and {last} {'both' if len(most) == 1 else 'all'} have find-site folders: "
                    f"{target}, with the most photographs in them, is taken as the culture asked about. If another "
                    "is meant, keep find-site folders for that culture alone (move the others' photographs up into "
                    f"their culture's folder, or leave their site empty in metadata.csv), or name its folder {TARGET}.")
    if why == "largest":
        said.append(f"No culture is named {TARGET} or has find-site folders, so the largest, {target}, is taken as "
                    "the culture asked about. To ask about another, put its photographs in "
                    "<folder>/<culture>/<site>/ folders (or give their sites in metadata.csv). If these subfolders "
                    "are one culture's find-sites, choose the folder one level up.")
    return said


def is_target(items: pd.DataFrame) -> np.ndarray:
    """Whether each figurine (a table with culture and site) is of the target culture."""
    return (items["culture"] == target_culture(items["culture"], items["site"])).to_numpy()


def unseen(paths, share: float, seed: int) -> np.ndarray:
    """Whether each file is in the `share` whose label stays hidden: a hash of its path and the seed, so the
    split does not change when files are added or the folder moves."""
    return np.array([int.from_bytes(hashlib.sha1(f"{seed}:{p}".encode()).digest()[:8], "big") / 2.0 ** 64 < share
                     for p in paths], bool)


def guide(items: pd.DataFrame, share: float, seed: int, sources: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Each image's source index (its prior component) where a guided model may see it, else -1; the sources
    (given, for a run that resumes; else every culture but the target)."""
    cultures, sites = items["culture"].reset_index(drop=True), items["site"].reset_index(drop=True)
    if sources is None:
        target = target_culture(cultures, sites)
        sources = sorted(c for c in cultures.unique() if c != target)
    index = cultures.map({s: i for i, s in enumerate(sources)}).fillna(-1).to_numpy(int)
    index[unseen(items["path"], share, seed)] = -1
    return index, sources
