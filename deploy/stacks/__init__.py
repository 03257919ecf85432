"""The stacks of the CDK app (network, data, platform) and the settings they share."""
