"""One module per DVC stage, each with `run(params)`; dvc.yaml lists each stage's own module as its code."""
