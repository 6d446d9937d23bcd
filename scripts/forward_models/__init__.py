"""Forward models: learn environment dynamics from pixels."""

from forward_models import envs as _envs  # noqa: F401  (registers the built-in envs)

__version__ = "0.1.0"
