"""track: the tracker interface the CLI and the sweep-end callback call (tracker=none does nothing), the MLflow
logger process (the only module that imports mlflow), and what it logs. Imports report (to read a written
report), core; never the loop."""
