"""What a stage may read of params.yaml: exactly the keys dvc.yaml declares for it (so that every value a
stage's results depend on reruns it when changed), plus the execution section, which changes only speed.

The keys a stage read are recorded (`DeclaredParams.read`), so a test can tell a declared key no stage reads: a change
to it would rerun the stage for nothing."""
from __future__ import annotations

EXECUTION = "execution"


class DeclaredParams(dict):
    """A params section whose missing keys name the stage and the undeclared key instead of a bare KeyError,
    and which records every leaf key read from it in the set `read` it shares with the sections below it (a
    section iterated or copied counts as each of its keys read, a section among them as read whole)."""

    def __init__(self, values: dict, stage: str, path: str = "", read: set[str] | None = None):
        self.stage, self.path = stage, path
        self.read = set() if read is None else read
        super().__init__({k: DeclaredParams(v, stage, f"{path}{k}.", self.read) if isinstance(v, dict) else v
                          for k, v in values.items()})

    def __missing__(self, key):
        raise KeyError(f"stage {self.stage} reads params key {self.path}{key}, which dvc.yaml does not declare "
                       f"for it: add it to the stage's params (or move it to {EXECUTION} if it changes only speed)")

    def _note(self, key, value):
        """A leaf read is recorded; a section reached is not (what is read in it is)."""
        if not isinstance(value, DeclaredParams):
            self.read.add(f"{self.path}{key}")
        return value

    def __getitem__(self, key):
        return self._note(key, super().__getitem__(key))

    def get(self, key, default=None):
        return self._note(key, super().get(key, default))

    def _read_all(self) -> None:
        self.read.update(f"{self.path}{k}" for k in dict.keys(self))

    def __iter__(self):
        self._read_all()
        return super().__iter__()

    def keys(self):
        self._read_all()
        return super().keys()

    def items(self):
        self._read_all()
        return super().items()

    def values(self):
        self._read_all()
        return super().values()

    def copy(self) -> dict:
        self._read_all()
        return dict(super().items())


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


def unread(params: dict, declared: list, read: set[str]) -> list[str]:
    """The leaves of the `declared` keys of `params` that a stage which `read` those keys never read: neither the
    leaf itself nor a section above it read whole."""
    def leaves(value, path: str):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                yield from leaves(v, f"{path}.{k}")
        else:
            yield path

    out = []
    for key in declared:
        node = params
        for part in key.split("."):
            node = node[part]
        for leaf in leaves(node, key):
            parts = leaf.split(".")
            if not any(".".join(parts[:n]) in read for n in range(1, len(parts) + 1)):
                out.append(leaf)
    return sorted(out)
