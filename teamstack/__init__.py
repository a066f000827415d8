"""The team stack on one machine (PostgreSQL, S3, MLflow and Prefect servers): ``python -m teamstack up``."""
