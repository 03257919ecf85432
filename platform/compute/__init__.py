"""External steps: the registry, the single entry point every launcher starts, and a Dagster Pipes
client for AWS Batch. The resources that launch steps live in `resources.compute`."""

from .steps import register_step, registered_steps, resolve_step

__all__ = ["register_step", "registered_steps", "resolve_step"]
