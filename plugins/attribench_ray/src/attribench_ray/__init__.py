"""attribench-ray: the `ray.ray` executor."""
