"""bench_core.runner's grid expansion: ``--set`` overrides for every cell and for one method's cells."""

from __future__ import annotations

from bench_core.plugins import load_plugins
from bench_core.runner import GridRequest, expand_grid, parse_grid_overrides


def test_a_method_s_own_overrides_reach_only_its_cells_on_top_of_the_grid_s() -> None:
    host = load_plugins()
    common, per_method = parse_grid_overrides(
        ["train.epochs=2", "bdgf:model.ddpm_epochs=1", "bdgf:train.epochs=3", "train.crops_per_epoch=grid:4"])
    assert common == {"train": {"epochs": 2, "crops_per_epoch": "grid:4"}}  # a colon in a value is a value
    assert per_method == {"bdgf": {"model": {"ddpm_epochs": 1}, "train": {"epochs": 3}}}
    cells = expand_grid(host, GridRequest(plugins=["bdgf", "two-branch-cnn"], overrides={"train": {"epochs": 2}},
                                          method_overrides=per_method))
    by_method = {c.method: c for c in cells}
    bdgf = by_method["bdgf"].config
    assert bdgf.train.epochs == 3 and bdgf.model["ddpm_epochs"] == 1
    assert by_method["two-branch-cnn"].config.train.epochs == 2
    (plain,) = expand_grid(host, GridRequest(plugins=["bdgf"], overrides={"train": {"epochs": 3}}))
    assert plain.config.model["ddpm_epochs"] != 1 and plain.key != by_method["bdgf"].key  # its own cell
