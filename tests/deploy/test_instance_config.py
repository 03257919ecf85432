"""deploy/dagster.yaml and deploy/workspace.yaml, validated by Dagster itself."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DEPLOY

pytestmark = pytest.mark.deploy

INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "lake-bucket",
    "DAGSTER_RUN_TASK_DEFINITION": "data-platform-run",
}


@pytest.fixture
def instance_yaml() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


@pytest.fixture
def instance_env(monkeypatch) -> dict[str, str]:
    for key, value in INSTANCE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return INSTANCE_ENV


def configurable_sections(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in config.items() if isinstance(v, dict) and "class" in v}


def test_validates_as_a_dagster_instance_config(tmp_path: Path):
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, custom_instance_class = dagster_instance_config(str(tmp_path))
    assert custom_instance_class is None
    assert {
        "storage",
        "run_launcher",
        "run_coordinator",
        "compute_logs",
        "run_monitoring",
        "run_retries",
    } <= set(config)


def test_every_class_imports_and_its_config_validates(instance_yaml, instance_env):
    """The instance schema only checks module/class/config shapes; each class checks its own."""
    from dagster._config import process_config
    from dagster._serdes import ConfigurableClass

    sections = configurable_sections(instance_yaml)
    assert set(sections) == {"run_coordinator", "run_launcher", "compute_logs"}
    for name, section in sections.items():
        cls = getattr(importlib.import_module(section["module"]), section["class"])
        assert issubclass(cls, ConfigurableClass), name
        result = process_config(cls.config_type(), section.get("config", {}))
        assert result.success, (name, result.errors)


def test_run_launcher_is_the_ecs_launcher_reusing_the_run_task_definition(instance_yaml):
    from dagster._config import validate_config
    from dagster_aws.ecs import EcsRunLauncher

    launcher = instance_yaml["run_launcher"]
    cls = getattr(importlib.import_module(launcher["module"]), launcher["class"])
    assert cls is EcsRunLauncher
    config = launcher["config"]
    assert validate_config(EcsRunLauncher.config_type(), config).success
    assert config["task_definition"] == {"env": "DAGSTER_RUN_TASK_DEFINITION"}
    assert config["container_name"] == "run"
    assert config["use_current_ecs_task_config"] is True
    assert config["secrets_tag"] is None, "no account-wide secretsmanager:ListSecrets"
    assert set(config["run_resources"]) >= {"cpu", "memory"}
    assert int(config["run_resources"]["memory"]) >= int(config["run_resources"]["cpu"])


def test_run_launcher_accepts_a_task_definition_shaped_like_the_stack(instance_yaml, instance_env):
    """EcsRunLauncher describes the named task definition at start and requires the `run`
    container in it; moto stands in for ECS."""
    import boto3
    import moto
    from dagster._serdes import ConfigurableClassData

    launcher = instance_yaml["run_launcher"]
    with moto.mock_aws():
        boto3.client("ecs").register_task_definition(
            family=INSTANCE_ENV["DAGSTER_RUN_TASK_DEFINITION"],
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu=launcher["config"]["run_resources"]["cpu"],
            memory=launcher["config"]["run_resources"]["memory"],
            containerDefinitions=[{"name": launcher["config"]["container_name"], "image": "x"}],
        )
        instance = ConfigurableClassData(
            launcher["module"], launcher["class"], yaml.safe_dump(launcher["config"])
        ).rehydrate(as_type=object)
        assert instance.task_definition.endswith(":task-definition/data-platform-run:1")
        assert instance.secrets_tags == []
        assert instance.run_resources == launcher["config"]["run_resources"]


def test_queue_limits_concurrency_and_monitoring_retries_failed_starts(instance_yaml):
    coordinator = instance_yaml["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    assert coordinator["config"]["max_concurrent_runs"] > 0
    monitoring = instance_yaml["run_monitoring"]
    assert monitoring["enabled"] is True
    assert 60 <= monitoring["start_timeout_seconds"] <= 1800
    retries = instance_yaml["run_retries"]
    assert retries["enabled"] is True and retries["max_retries"] >= 1


def test_postgres_storage_and_compute_logs_come_from_the_environment(instance_yaml, instance_env):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster_postgres import DagsterPostgresStorage  # noqa: F401  (the storage class)

    processed = process_config(dagster_instance_config_schema(), instance_yaml)
    assert processed.success, processed.errors
    db = processed.value["storage"]["postgres"]["postgres_db"]
    assert db["hostname"] == "db.internal" and db["port"] == 5432
    assert db["password"] == "not-a-secret"
    assert db["params"] == {"sslmode": "require"}
    compute_logs = instance_yaml["compute_logs"]
    assert compute_logs["class"] == "S3ComputeLogManager"
    assert compute_logs["config"]["bucket"] == {"env": "DAGSTER_COMPUTE_LOGS_BUCKET"}
    assert compute_logs["config"]["prefix"] == "compute-logs"


def test_compute_log_prefix_matches_the_lake_lifecycle(instance_yaml, deploy_modules):
    data = deploy_modules["stacks.data"]
    assert instance_yaml["compute_logs"]["config"]["prefix"] == data.COMPUTE_LOGS_PREFIX


def test_launcher_defaults_match_the_run_task_definition(instance_yaml, deploy_modules):
    platform = deploy_modules["stacks.platform"]
    resources = instance_yaml["run_launcher"]["config"]["run_resources"]
    assert (int(resources["cpu"]), int(resources["memory"])) == (
        platform.RUN_CPU,
        platform.RUN_MEMORY_MIB,
    )


def test_workspace_loads_the_code_location_over_grpc(deploy_modules):
    settings = deploy_modules["stacks.settings"]
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    assert entry == {
        "grpc_server": {
            "host": settings.CODE_LOCATION_HOST,
            "port": settings.CODE_SERVER_PORT,
            "location_name": "data_platform",
        }
    }
    from dagster._core.workspace.config_schema import process_workspace_config

    assert process_workspace_config(workspace).success
