"""The image classifier's code for SageMaker's PyTorch containers (issue 9).

Every module also runs flat, as the containers load it: `train.py` from the `code` channel's
`sourcedir.tar.gz`, `inference.py` from `code/` inside `model.tar.gz`; so imports between the modules
fall back from package-relative to top-level.
"""
