"""Monitoring of datasets: column profiles and drift, freshness, and the scheduled checks."""
