"""docs/parameters.md's reference tables, generated from the pydantic schema and dvc.yaml; tests/test_params.py
checks that the docs hold them. After changing the schema or dvc.yaml:

    python tests/param_tables.py > /tmp/tables.md     # then paste it over the tables in docs/parameters.md
"""

from pathlib import Path

import yaml

from notmnist.core.config import KERAS1_NAMES, LAYERS, Params, allowed, section_of

DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"


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

    def same_or_inside(path, folder):
        return path == folder or path.startswith(folder.rstrip("/") + "/")

    rerun = []
    for name, stage in stages.items():
        outs = [out for up in rerun for kind in ("outs", "metrics", "plots") for out in paths(stages[up].get(kind, []))]
        deps = paths(stage.get("deps", []))
        if reads(stage) or any(same_or_inside(d, o) or same_or_inside(o, d) for d in deps for o in outs):
            rerun.append(name)
    return rerun


def cell(value):
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def tables():
    """The Markdown reference: every parameter with the stages it reruns, every layer key, Keras 1 names."""
    stages = yaml.safe_load(DVC_YAML.read_text(encoding="utf-8"))["stages"]
    lines = ["| parameter | default | allowed | meaning | reruns |", "|---|---|---|---|---|"]
    for key, default, accepts, meaning in reference_rows():
        reruns = ", ".join(rerun_stages(key, stages)) or "nothing"
        lines.append(f"| `{key}` | {cell(default)} | {accepts} | {meaning} | {reruns} |")
    lines += ["", "| layer `type` | key | default | allowed | meaning |", "|---|---|---|---|---|"]
    for kind, layer in LAYERS.items():
        if len(layer.model_fields) == 1:
            lines.append(f"| `{kind}` | | | | no settings |")
        for key, default, accepts, meaning in reference_rows(layer):
            lines.append(f"| `{kind}` | `{key}` | {cell(default)} | {accepts} | {meaning} |")
    lines += ["", "| Keras 1 name (an error) | use instead |", "|---|---|"]
    lines += [f"| `{old}` | {new} |" for old, new in KERAS1_NAMES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(tables(), end="")
