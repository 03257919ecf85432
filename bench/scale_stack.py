"""moto's server in this process as the deploy's AWS stands in, for the sensor-scale bench.

A fresh account per scenario: raw and lake buckets, an SQS queue with a dead-letter queue, the
raw bucket's notifications to it, a Glue database; history objects written straight into
moto's in-process S3 backend (no notifications, LastModified in the past), because boto3
`put_object` runs at about 100 objects/s here; and a counter of S3/SQS calls and their
seconds around botocore's dispatch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
import urllib.request
from collections import Counter
from pathlib import Path

import boto3
import botocore.client
import dagster as dg
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

from data_platform.resources.s3 import _info
from tests.helpers import free_port

REGION = "eu-west-1"
HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
HISTORY_DAYS = 30


class Calls:
    """S3 and SQS API calls by (service, operation) and the seconds spent in them, counted
    around botocore's dispatch; and the seconds of the sensor's own evaluation (the rest of a
    tick is the daemon's part: adding partitions, deduplicating run keys, recording runs)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.seconds: Counter = Counter()
        self.eval_s = 0.0
        original = botocore.client.BaseClient._make_api_call
        evaluate = dg.SensorDefinition.evaluate_tick
        calls = self

        def counted(client, operation_name, api_params):
            service = client.meta.service_model.service_name
            calls.counts[(service, operation_name)] += 1
            t0 = time.perf_counter()
            try:
                return original(client, operation_name, api_params)
            finally:
                calls.seconds[service] += time.perf_counter() - t0

        def timed(sensor, context):
            t0 = time.perf_counter()
            try:
                return evaluate(sensor, context)
            finally:
                calls.eval_s += time.perf_counter() - t0

        botocore.client.BaseClient._make_api_call = counted
        dg.SensorDefinition.evaluate_tick = timed

    @contextlib.contextmanager
    def measure(self):
        self.counts.clear()
        self.seconds.clear()
        self.eval_s = 0.0
        out: dict = {}
        t0 = time.perf_counter()
        yield out
        out["s"] = time.perf_counter() - t0
        out.update(eval=self.eval_s, calls=dict(self.counts), s3_s=self.seconds["s3"],
                   sqs_s=self.seconds["sqs"])


def csv_body(i: int) -> bytes:
    """A one-row orders CSV (valid against the contract; the bench's ticks never read it)."""
    return (HEADER + f"{i},c{i},2.50,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n").encode()


class Stack:
    """moto's server and a fresh account per scenario, with the PLATFORM_* variables set."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        os.environ.update({
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION, "PLATFORM_ENV": "aws",
            "PLATFORM_RAW_URL": "s3://raw-bucket/raw", "PLATFORM_LAKE_URL": "s3://lake-bucket/lake",
            "PLATFORM_GLUE_DATABASE": "platform", "PLATFORM_ATHENA_WORKGROUP": "platform",
            "PLATFORM_ATHENA_OUTPUT_URL": "s3://lake-bucket/athena-results/",
            "PLATFORM_SCRATCH_DIR": str(workdir / "scratch"),
            "PLATFORM_SENSOR_SETTLE_SECONDS": "0",
            # Runs are recorded, never executed: healing must not ask for them again meanwhile.
            "PLATFORM_SENSOR_HEAL_AFTER_SECONDS": str(10**9),
        })
        (workdir / "scratch").mkdir(parents=True, exist_ok=True)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.n = 0

    def stop(self):
        self.server.stop()

    def fresh(self, mode: str, size: int) -> tuple[dict, dg.DagsterInstance]:
        """An empty account holding `size` old orders objects (and 5 penguins), notifications
        on, and a new on-disk instance; the sensor in `mode`."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset",
                                                      method="POST"), timeout=30)
        for bucket in ("raw-bucket", "lake-bucket"):
            self.s3.create_bucket(Bucket=bucket,
                                  CreateBucketConfiguration={"LocationConstraint": REGION})
        boto3.client("glue", region_name=REGION).create_database(
            DatabaseInput={"Name": "platform"})
        history = populate("raw-bucket", {"orders": size, "penguins": 5})
        dlq = self.sqs.create_queue(QueueName="raw-events-dlq")["QueueUrl"]
        queue = self.sqs.create_queue(QueueName="raw-events", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": self.arn(dlq),
                                         "maxReceiveCount": "5"})})["QueueUrl"]
        self.s3.put_bucket_notification_configuration(
            Bucket="raw-bucket", NotificationConfiguration={"QueueConfigurations": [{
                "QueueArn": self.arn(queue),
                "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "raw/"}]}}}]})
        if mode == "queue":
            os.environ["PLATFORM_RAW_EVENTS_QUEUE_URL"] = queue
        else:
            os.environ.pop("PLATFORM_RAW_EVENTS_QUEUE_URL", None)
        self.n += 1
        home = self.workdir / f"dagster_home_{self.n}"
        home.mkdir()
        (home / "dagster.yaml").write_text("")
        os.environ["DAGSTER_HOME"] = str(home)
        return history, dg.DagsterInstance.from_config(str(home))

    def arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]


def populate(bucket: str, counts: dict[str, int]) -> dict[str, dict[str, list]]:
    """Write old objects straight into moto's S3 backend (no notifications); returns
    {dataset: {key: [signature, seq]}} as the sensor would record them once handled."""
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(
        days=HISTORY_DAYS)
    out: dict[str, dict[str, list]] = {}
    for ds, n in counts.items():
        rows = out.setdefault(ds, {})
        step = (HISTORY_DAYS - 1) * 86400 / max(1, n)
        for i in range(n):
            # Nested folders, as a date-partitioned upload layout would have.
            rel = f"{2026 - i % 3}/{i % 12 + 1:02d}/part-{i:07d}.csv"
            key = backend.put_object(bucket, f"raw/{ds}/{rel}", csv_body(i),
                                     disable_notification=True)
            when = start + dt.timedelta(seconds=int(i * step))
            key.last_modified = when.replace(tzinfo=None)  # moto keeps naive UTC times
            info = _info(rel, key.size, when, key.etag)
            rows[rel] = [info.signature, info.changed_ns]
    return out


def put_rate(s3, n: int = 200) -> float:
    """Objects per second through boto3 put_object (one client, one thread)."""
    t0 = time.perf_counter()
    for i in range(n):
        s3.put_object(Bucket="raw-bucket", Key=f"probe/{i}.csv", Body=csv_body(i))
    return n / (time.perf_counter() - t0)
