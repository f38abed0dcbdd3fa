"""Prefect flows: thin wrappers that turn the plain functions of the other packages into tasks,
assets and artifacts. One module per job: build (one flow per builder, build_all), segment,
train, evaluate, demo. Deployments of each are in prefect.yaml."""
