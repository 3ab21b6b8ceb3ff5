"""What a stage may read of params.yaml: exactly the keys dvc.yaml declares for it (so that every value a
stage's results depend on reruns it when changed), plus the execution section, which changes only speed."""
from __future__ import annotations

EXECUTION = "execution"


class DeclaredParams(dict):
    """A params section whose missing keys name the stage and the undeclared key instead of a bare KeyError."""

    def __init__(self, values: dict, stage: str, path: str = ""):
        super().__init__({k: DeclaredParams(v, stage, f"{path}{k}.") if isinstance(v, dict) else v
                          for k, v in values.items()})
        self.stage, self.path = stage, path

    def __missing__(self, key):
        raise KeyError(f"stage {self.stage} reads params key {self.path}{key}, which dvc.yaml does not declare "
                       f"for it: add it to the stage's params (or move it to {EXECUTION} if it changes only speed)")


def stage_params(params: dict, declared: list, stage: str) -> DeclaredParams:
    """The declared keys of `params` (a section `train` or a key `train.seed`, as dvc.yaml lists them), each
    at its place in the tree, and the whole execution section."""
    out: dict = {}
    for key in declared:
        *sections, leaf = key.split(".")
        source, target = params, out
        for section in sections:
            source, target = source[section], target.setdefault(section, {})
        target[leaf] = source[leaf]
    out[EXECUTION] = params[EXECUTION]
    return DeclaredParams(out, stage)
