"""Composition roots of the ``metarl`` commands."""

from metarl_cli.core.naming import register_resolvers

# Before any Hydra main composes: hydra.sweep.subdir in configs/train.yaml uses this resolver,
# and a launcher's worker process reaches the train command only through this package.
register_resolvers()
