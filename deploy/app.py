"""CDK app of the data platform: wires the network, data and platform stacks.

Run by the CDK CLI from this folder (`cdk synth`, `cdk deploy --all`, see README.md); tests call
`build_app` in-process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from stacks.data import DataStack
from stacks.network import NetworkStack
from stacks.platform import PlatformStack
from stacks.settings import DeploySettings

HERE = Path(__file__).resolve().parent


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    env: cdk.Environment | None = None,
    outdir: str | None = None,
) -> cdk.App:
    """Return the app with its three stacks; `context` overrides cdk.json's context values."""
    defaults = json.loads((HERE / "cdk.json").read_text())["context"]
    app = cdk.App(context={**defaults, **(context or {})}, outdir=outdir)
    settings = DeploySettings.from_context(app.node)
    env = env or cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    prefix = "".join(part.capitalize() for part in settings.name.split("-"))

    network = NetworkStack(app, f"{prefix}Network", settings=settings, env=env)
    data = DataStack(app, f"{prefix}Data", settings=settings, vpc=network.vpc, env=env)
    platform = PlatformStack(
        app,
        f"{prefix}Services",
        settings=settings,
        vpc=network.vpc,
        vpc_cidr=network.vpc_cidr,
        data=data,
        env=env,
    )
    # The platform names the buckets instead of referencing them; keep the deploy order anyway.
    platform.add_stack_dependency(data)

    cdk.Tags.of(app).add("project", settings.name)
    cdk.Tags.of(app).add("managed-by", "aws-cdk")
    return app


if __name__ == "__main__":
    from cdk_nag import AwsSolutionsChecks

    cli_app = build_app()
    cdk.Validations.of(cli_app).add_plugins(AwsSolutionsChecks(cli_app))
    cli_app.synth()
