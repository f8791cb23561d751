"""Training pipelines with quality gates (``modelhost.yaml``)."""
