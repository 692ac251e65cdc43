"""The folder chooser reaches only the configured data roots."""
import os

import pytest

from core.errors import UserError
from core.paths import within_roots


def test_the_folder_chooser_stays_inside_its_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inside").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "escape")          # a symlink that leaves the root
    os.symlink(root / "inside", root / "alias")   # one that stays inside
    roots = [root.resolve()]
    inside = (root / "inside").resolve()
    assert within_roots(str(root / "inside"), roots) == inside
    assert within_roots("inside", roots) == inside  # relative to the first root
    assert within_roots(str(root / "alias"), roots) == inside
    for bad in [str(outside), str(root / ".." / "outside"), "../outside", str(root / "escape"),
                str(root / "escape" / ".."), "~", "/", "/etc"]:
        with pytest.raises(UserError, match="outside the folders"):
            within_roots(bad, roots)
    with pytest.raises(UserError, match="folder not found"):
        within_roots(str(root / "missing"), roots)
    with pytest.raises(UserError, match="enter the path"):
        within_roots("  ", roots)
