"""Entry point of the `bam` plugin. It registers nothing yet: its datasets, models and metrics are
being built (see the project's issues); the package already installs and loads like any plugin."""
