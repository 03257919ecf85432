"""Dataset contracts: one YAML file per dataset (package data)."""
