"""Monitoring: drift statistics against the reference profile, data quality, decay, reports, decisions."""
