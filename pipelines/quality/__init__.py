"""Data quality: schema validation, statistics, skew and drift, schema inference, POC comparison."""
