"""Reusable constructs of the CDK app: keyword-only arguments, **kwargs forwarded."""
