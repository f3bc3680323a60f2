"""The parameter reference of docs/parameters.md, generated from the pydantic schema and dvc.yaml.

Kept apart from notmnist/core/config.py, which every stage imports: editing a help text here reruns
no stage. `notmnist params --table` prints it.
"""

import yaml

from notmnist.core.config import KERAS1_NAMES, LAYERS, Params, allowed, section_of


def reference_rows(model=Params, prefix=""):
    """(key, default, allowed, meaning) for every parameter of a pydantic model, in params.yaml order."""
    for key, field in model.model_fields.items():
        if section_of(field):
            yield from reference_rows(section_of(field), f"{prefix}{key}.")
        elif key != "type":  # a layer's type names its row
            default = "(required)" if field.is_required() else field.default
            yield (f"{prefix}{key}", default, allowed(field), field.description)


def rerun_stages(key, stages):
    """Stages of dvc.yaml's `stages` that rerun when `key` changes: those whose params list names
    it (or a section above it), then every stage downstream of them, in dvc.yaml order."""

    def reads(stage):
        names = [p for p in stage.get("params", []) if isinstance(p, str)]
        names += [k for p in stage.get("params", []) if isinstance(p, dict) for k in p.get("params.yaml", [])]
        return any(key == name or key.startswith(name + ".") for name in names)

    def paths(entries):
        return [next(iter(e)) if isinstance(e, dict) else e for e in entries]

    rerun = []
    for name, stage in stages.items():
        outs = [
            out
            for upstream in rerun
            for kind in ("outs", "metrics", "plots")
            for out in paths(stages[upstream].get(kind, []))
        ]
        feeds = any(
            _same_or_inside(dep, out) or _same_or_inside(out, dep)
            for dep in paths(stage.get("deps", []))
            for out in outs
        )
        if reads(stage) or feeds:
            rerun.append(name)
    return rerun


def _same_or_inside(path, folder):
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _cell(value):
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def tables(dvc_yaml="dvc.yaml"):
    """The Markdown reference: every parameter with the stages it reruns, every layer key, Keras 1 names."""
    with open(dvc_yaml, encoding="utf-8") as file:
        stages = yaml.safe_load(file)["stages"]
    lines = ["| parameter | default | allowed | meaning | reruns |", "|---|---|---|---|---|"]
    for key, default, accepts, meaning in reference_rows():
        lines.append(
            f"| `{key}` | {_cell(default)} | {accepts} | {meaning} | "
            f"{', '.join(rerun_stages(key, stages)) or 'nothing'} |"
        )
    lines += ["", "| layer `type` | key | default | allowed | meaning |", "|---|---|---|---|---|"]
    for kind, layer in LAYERS.items():
        if len(layer.model_fields) == 1:
            lines.append(f"| `{kind}` | | | | no settings |")
        for key, default, accepts, meaning in reference_rows(layer):
            lines.append(f"| `{kind}` | `{key}` | {_cell(default)} | {accepts} | {meaning} |")
    lines += ["", "| Keras 1 name (an error) | use instead |", "|---|---|"]
    lines += [f"| `{old}` | {new} |" for old, new in KERAS1_NAMES.items()]
    return "\n".join(lines) + "\n"
