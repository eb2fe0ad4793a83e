"""A1111's "X/Y/Z plot": one generation per combination of the X, Y and Z values, a labelled grid per Z value
(X across the top, Y down the side) and one grid of those grids; every cell is a job of its own.

script_args, in A1111's order: x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type,
z_values, z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x,
vary_seeds_y, vary_seeds_z, margin_size, csv_mode. Axis types are indices into the tab's list (studio.scripts.axes)
or their labels. Answer: the grid, then each Z value's grid (include_sub_grids), then each cell's picture
(include_lone_images), in A1111's order (Z, then Y, then X)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from itertools import product

from PIL import Image

from ..contract import GenerationRequest, RequestError, SavedImage
from .axes import Axis, find_axis, tab_labels
from .common import MAX_SEED_DRAW, Arguments, Output, Plan, PlanContext, arg_info, cell_output, first_image, fixed_seeds, with_params
from .grids import Label, labelled_grid
from .values import parse_values

TITLE = "X/Y/Z plot"
ARG_NAMES = ("x_type", "x_values", "x_values_dropdown", "y_type", "y_values", "y_values_dropdown", "z_type", "z_values",
             "z_values_dropdown", "draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds",
             "vary_seeds_x", "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode")
DEFAULTS = (1, "", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, False)
MAX_MARGIN = 500


@dataclass
class AxisValues:
    letter: str  # "X", "Y", "Z"
    axis: Axis
    text: str  # the values as given (the infotext's "X Values")
    values: list

    @property
    def labels(self) -> list[str]:
        return [self.axis.format(value) for value in self.values]


def _values(args: Arguments, letter: str, context: PlanContext, csv_mode: bool, no_fixed_seeds: bool) -> AxisValues:
    key = letter.lower()
    axis = find_axis(args.raw(f"{key}_type"), context.img2img, letter)
    if axis.kind == "nothing":
        return AxisValues(letter, axis, "", [None])
    dropdown = args.raw(f"{key}_values_dropdown") or []
    if axis.choices and not csv_mode and dropdown:  # A1111 reads these axes from the dropdown list
        if not isinstance(dropdown, list) or not all(isinstance(v, str) for v in dropdown):
            raise RequestError(f"{letter} values (dropdown) must be a list of names.")
        text = ",".join(f'"{v}"' if "," in v else v for v in dropdown)
        values = [v.strip() for v in dropdown]
    else:
        text = args.text(f"{key}_values")
        values = parse_values(text, axis.kind, f"{letter} values ({axis.label})", context.limit)
    if not values:
        raise RequestError(f"{letter} values are empty: give the {axis.label} values to compare.")
    if axis.prepare is not None:
        values = [axis.prepare(context, value) for value in values]
    if axis.label in ("Seed", "Var. seed") and not no_fixed_seeds:
        values = [random.randrange(MAX_SEED_DRAW) if value == -1 else value for value in values]
    return AxisValues(letter, axis, text, values)


def _params(axes: list[AxisValues], no_fixed_seeds: bool) -> dict:
    """The grid's extra infotext pairs (A1111's "X Type", "X Values", "Fixed X Values" ...)."""
    params = {"Script": TITLE}
    for axis in axes:
        if axis.axis.kind == "nothing":
            continue
        params[f"{axis.letter} Type"] = axis.axis.label
        params[f"{axis.letter} Values"] = axis.text
        if axis.axis.label in ("Seed", "Var. seed") and not no_fixed_seeds:
            params[f"Fixed {axis.letter} Values"] = ", ".join(str(v) for v in axis.values)
    return params


def plan(context: PlanContext, request: GenerationRequest, script_args) -> Plan:
    args = Arguments(TITLE, script_args, ARG_NAMES, DEFAULTS)
    csv_mode, no_fixed = args.flag("csv_mode"), args.flag("no_fixed_seeds")
    xs, ys, zs = (_values(args, letter, context, csv_mode, no_fixed) for letter in "XYZ")
    context.check_count(len(xs.values) * len(ys.values) * len(zs.values), f"{TITLE} ({len(xs.values)} × {len(ys.values)} × {len(zs.values)})")
    margin = args.number("margin_size", 0, MAX_MARGIN, whole=True)
    vary = (args.flag("vary_seeds_x"), args.flag("vary_seeds_y"), args.flag("vary_seeds_z"))
    notes = []
    if request.batch_size != 1 or request.batch_count != 1:
        notes.append(f"{TITLE} makes one image per cell: batch size and batch count are not used.")
    base = replace(request if no_fixed else fixed_seeds(request), batch_size=1, batch_count=1)
    cells = _cells(context, base, (xs, ys, zs), vary)
    order = _run_order((xs, ys, zs))
    layout = GridPlan((xs, ys, zs), cells, order, margin, args.flag("draw_legend"), args.flag("include_lone_images"),
                      args.flag("include_sub_grids"), _params([xs, ys, zs], no_fixed))
    return Plan(TITLE, [cells[i] for i in order], layout.assemble, notes=notes)


def _cells(context: PlanContext, base: GenerationRequest, axes, vary) -> list[GenerationRequest]:
    """Every cell's request, in A1111's index order (ix + iy·nx + iz·nx·ny), each checked."""
    xs, ys, zs = axes
    nx, ny = len(xs.values), len(ys.values)
    cells = []
    for (iz, z), (iy, y), (ix, x) in product(enumerate(zs.values), enumerate(ys.values), enumerate(xs.values)):
        cell = base
        for axis, value in ((xs, x), (ys, y), (zs, z)):
            cell = axis.axis.apply(cell, value, axis.values, context.img2img)
        if cell.seed >= 0:  # A1111's vary_seeds_*: the seed moves on along the axis
            offset = (ix if vary[0] else 0) + (iy * (nx if vary[0] else 1) if vary[1] else 0)
            offset += iz * (nx if vary[0] else 1) * (ny if vary[1] else 1) if vary[2] else 0
            cell = replace(cell, seed=cell.seed + offset)
        where = ", ".join(label for label in (xs.labels[ix], ys.labels[iy], zs.labels[iz]) if label)
        cells.append(context.check(cell, f"{TITLE}, cell {where or len(cells) + 1}: "))
    return cells


def _run_order(axes) -> list[int]:
    """Cell indices in the order to run them: the axis slowest to change (a checkpoint, a VAE) outermost, else Z,
    then Y, then X (A1111's first_axes_processed)."""
    xs, ys, zs = axes
    nx, ny = len(xs.values), len(ys.values)
    by_cost = sorted(((zs, 2), (ys, 1), (xs, 0)), key=lambda pair: -pair[0].axis.cost)

    def key(index: int):
        position = (index % nx, index // nx % ny, index // (nx * ny))
        return tuple(position[slot] for _, slot in by_cost)

    return sorted(range(nx * ny * len(zs.values)), key=key)


@dataclass
class GridPlan:
    axes: tuple
    cells: list[GenerationRequest]
    order: list[int]
    margin: int
    legend: bool
    lone_images: bool
    sub_grids: bool
    params: dict

    def assemble(self, results: list[list[SavedImage]]) -> list[Output]:
        xs, ys, zs = self.axes
        per_cell: list[list[SavedImage]] = [[] for _ in self.cells]
        for position, saved in zip(self.order, results):
            per_cell[position] = saved
        pictures = [first_image(saved) for saved in per_cell]
        size = next((p.size for p in pictures if p is not None), (self.cells[0].width or 64, self.cells[0].height or 64))
        pictures = [p if p is not None else Image.new("RGB", size) for p in pictures]
        per_z = len(xs.values) * len(ys.values)
        top, left = [[Label(t)] for t in xs.labels], [[Label(t)] for t in ys.labels]
        sub_grids = [labelled_grid(pictures[iz * per_z:(iz + 1) * per_z], len(ys.values), top, left, self.margin, self.legend)
                     for iz in range(len(zs.values))]
        main = labelled_grid(sub_grids, 1, [[Label(t)] for t in zs.labels], [[Label("")]], 0, self.legend)
        z_params = {k: v for k, v in self.params.items() if not k.startswith(("Z ", "Fixed Z"))}
        outputs = [self._grid(main, per_cell[0], self.cells[0], self.params)]
        if self.sub_grids:
            outputs += [self._grid(grid, per_cell[iz * per_z], self.cells[iz * per_z], z_params) for iz, grid in enumerate(sub_grids)]
        if self.lone_images:
            outputs += [cell_output(self.cells[i], saved) for i, cell in enumerate(per_cell) for saved in cell]
        return outputs

    @staticmethod
    def _grid(picture: Image.Image, saved: list[SavedImage], request: GenerationRequest, params: dict) -> Output:
        infotext = with_params(saved[0].infotext, params) if saved else ""
        seed = saved[0].seed if saved else request.seed
        return Output(infotext, seed, request.prompt, request.negative_prompt, image=picture, grid=True)


def script_args_info(img2img: bool) -> list[dict]:
    """A1111's script-info args for this script (the UI's components, in order)."""
    labels = tab_labels(img2img)

    def dropdown(label, default):
        return arg_info(label, default, choices=labels)

    return [
        dropdown("X type", labels[1]), arg_info("X values", ""), arg_info("X values", None, choices=[]),
        dropdown("Y type", labels[0]), arg_info("Y values", ""), arg_info("Y values", None, choices=[]),
        dropdown("Z type", labels[0]), arg_info("Z values", ""), arg_info("Z values", None, choices=[]),
        arg_info("Draw legend", True), arg_info("Include Sub Images", False), arg_info("Include Sub Grids", False),
        arg_info("Keep -1 for seeds", False), arg_info("Vary seeds for X", False), arg_info("Vary seeds for Y", False),
        arg_info("Vary seeds for Z", False), arg_info("Grid margins (px)", 0, 0, MAX_MARGIN, 2),
        arg_info("Use text inputs instead of dropdowns", False),
    ]
