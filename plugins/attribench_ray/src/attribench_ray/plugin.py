"""Entry point of the `ray` plugin: registration only (a lazy target: `attribench list` never imports ray)."""

from attribench_core import hookimpl


@hookimpl
def register_executors(register):
    register(
        "ray",
        "attribench_ray.executor:RayExecutor",
        description="On Ray workers: a local cluster, or --ray-address ADDRESS (one worker per device slot)",
    )
