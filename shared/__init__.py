"""Components and helpers shared by the ml-pipeline and gpu-training Pulumi projects.

Nothing in this package reads Pulumi config: each project's ``config.py`` does that once and passes
typed arguments in.
"""
