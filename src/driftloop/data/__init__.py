"""Raw data in, clean data out: ingestion of partitions, validation with quarantine, fitted transforms."""
