#!/bin/sh
# Run once by the postgres image on an empty data directory: a role and a database each for driftloop's
# metadata and MLflow's tracking store, with the passwords from .env.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres <<SQL
CREATE ROLE driftloop LOGIN PASSWORD '${DRIFTLOOP_DB_PASSWORD}';
CREATE DATABASE driftloop OWNER driftloop;
CREATE ROLE mlflow LOGIN PASSWORD '${MLFLOW_DB_PASSWORD}';
CREATE DATABASE mlflow OWNER mlflow;
SQL
