"""Fixtures of the deploy tests: the CDK app synthesized once per session, in-process.

No AWS account, network or CDK CLI is needed: stacks get a fixed dummy account and region, and
the cdk-nag AwsSolutions pack runs as a CDK validation plugin during synthesis. jsii runs the
library on Node; Node 20 works but prints an end-of-life banner, silenced here.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
IMAGE_TAG = "test-tag"

CERTIFICATE = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000000"
PUBLIC_CONTEXTS: dict[str, dict[str, str]] = {
    "cognito": {
        "webserver_access": "cognito",
        "interface_endpoints": "true",
        "certificate_arn": CERTIFICATE,
        "webserver_domain": "dagster.example.com",
        "cognito_domain_prefix": "example-dagster",
    },
    "oidc": {
        "webserver_access": "oidc",
        "interface_endpoints": "true",
        "certificate_arn": CERTIFICATE,
        "webserver_domain": "dagster.example.com",
        "oidc_issuer": "https://login.example.com",
        "oidc_authorization_endpoint": "https://login.example.com/authorize",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_user_info_endpoint": "https://login.example.com/userinfo",
        "oidc_client_id": "dagster-webserver",
        "oidc_client_secret_name": "data-platform/oidc-client-secret",
    },
}


@dataclass
class Synthesized:
    """One synthesized app: its templates by stack name and the outcome of cdk-nag."""

    app: Any
    templates: dict[str, dict[str, Any]]
    validation_error: str | None
    validation_report: dict[str, Any] | None

    def template(self, suffix: str) -> dict[str, Any]:
        """The template of the stack whose name ends with `suffix` (Network, Data, Services)."""
        (name,) = [n for n in self.templates if n.endswith(suffix)]
        return self.templates[name]

    def resources(self, resource_type: str, stack: str | None = None) -> dict[str, dict]:
        """Resources of one CloudFormation type, from one stack or from all of them."""
        found = {}
        for name, template in self.templates.items():
            if stack and not name.endswith(stack):
                continue
            for logical_id, resource in template["Resources"].items():
                if resource["Type"] == resource_type:
                    found[logical_id] = resource
        return found


@pytest.fixture(scope="session")
def deploy_modules() -> dict[str, ModuleType]:
    """The CDK app modules, importable the way `cdk` runs them (from the deploy folder)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
        mp.syspath_prepend(str(DEPLOY))
        modules = {
            name: importlib.import_module(name)
            for name in (
                "app",
                "stacks.settings",
                "stacks.data",
                "stacks.platform",
                "components.nag",
                "idle_cost",
            )
        }
        yield modules
    for name in list(sys.modules):
        if name in ("app", "idle_cost") or name.split(".")[0] in ("stacks", "components"):
            del sys.modules[name]


def _synthesize(
    modules: dict[str, ModuleType], context: dict[str, Any], outdir: Path
) -> Synthesized:
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    app = modules["app"].build_app(
        context, env=cdk.Environment(account=ACCOUNT, region=REGION), outdir=str(outdir)
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    error = None
    try:
        app.synth()
    except Exception as exc:  # cdk-nag 3 fails synthesis through CDK's policy validation
        error = str(exc)
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }
    return Synthesized(app, templates, error, report)


@pytest.fixture(scope="session")
def synthesized(deploy_modules, tmp_path_factory) -> Synthesized:
    """The default deployment: internal webserver, image tag given."""
    return _synthesize(
        deploy_modules, {"image_tag": IMAGE_TAG}, tmp_path_factory.mktemp("cdk-default")
    )


@pytest.fixture(scope="session")
def synthesized_lean(deploy_modules, tmp_path_factory) -> Synthesized:
    """The lean profile (-c profile=lean), image tag given, so its services run."""
    return _synthesize(
        deploy_modules,
        {"image_tag": IMAGE_TAG, "profile": "lean"},
        tmp_path_factory.mktemp("cdk-lean"),
    )


@pytest.fixture(scope="session", params=sorted(PUBLIC_CONTEXTS))
def synthesized_public(request, deploy_modules, tmp_path_factory) -> Synthesized:
    """Internet-facing webserver behind Cognito or OIDC, before any image was pushed."""
    return _synthesize(
        deploy_modules,
        PUBLIC_CONTEXTS[request.param],
        tmp_path_factory.mktemp(f"cdk-{request.param}"),
    )
