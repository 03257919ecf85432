"""Queue mode of the raw-upload sensor against moto's server on 127.0.0.1: the raw bucket sends
its S3 event notifications to a real SQS queue (with a dead-letter queue), and the sensor is
evaluated as the daemon does (run-key dedup included, tests/helpers.tick). Crafted messages
(duplicates, reordered sequencers, foreign keys, poison) are sent to the same queue in S3's
notification format; moto's own notifications carry no sequencer.
"""

import json
import time

import boto3
import dagster as dg
import pytest
from data_platform.definitions import build_definitions
from data_platform.resources.s3 import _info
from data_platform.sensors.planning import fair_shares

from .conftest import moto_server
from .helpers import sensor_state, tick

REGION = "eu-west-1"
HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids):
    return HEADER + "".join(f"{i},c{i},2.50,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                            for i in ids)


class Env:
    def __init__(self, s3, sqs, queue_url, dlq_url):
        self.s3, self.sqs, self.queue_url, self.dlq_url = s3, sqs, queue_url, dlq_url
        self.defs = build_definitions("aws")
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None

    def upload(self, key, body):
        self.s3.put_object(Bucket="raw-bucket", Key=f"raw/{key}", Body=body.encode())

    def tick(self, cursor="current", submit=True):
        requests, skip, new = tick(self.defs, self.instance,
                                   self.cursor if cursor == "current" else cursor, submit=submit)
        if cursor == "current" and submit:
            self.cursor = new
        return requests, skip, new

    def send(self, body):
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))

    def depth(self, url=None) -> int:
        a = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return sum(int(v) for v in a["Attributes"].values())

    def execute(self, req):
        job = self.defs.resolve_job_def(req.job_name)
        tags = {k: v for k, v in req.tags.items()
                if k.startswith(("dagster/asset_partition", "ecs/"))}
        return job.execute_in_process(instance=self.instance, run_config=req.run_config,
                                      tags=tags, partition_key=req.partition_key,
                                      raise_on_error=False)


@pytest.fixture
def env(monkeypatch, tmp_path):
    with moto_server(monkeypatch, REGION):
        for var, value in {
            "PLATFORM_ENV": "aws",
            "PLATFORM_RAW_URL": "s3://raw-bucket/raw", "PLATFORM_LAKE_URL": "s3://lake-bucket/lake",
            "PLATFORM_GLUE_DATABASE": "platform", "PLATFORM_ATHENA_WORKGROUP": "platform",
            "PLATFORM_ATHENA_OUTPUT_URL": "s3://lake-bucket/athena-results/",
            "PLATFORM_SCRATCH_DIR": str(tmp_path),
            "PLATFORM_SENSOR_QUEUE_VISIBILITY_SECONDS": "1",
            "PLATFORM_SENSOR_RECONCILE_SECONDS": "3600",
        }.items():
            monkeypatch.setenv(var, value)
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("raw-bucket", "lake-bucket"):
            s3.create_bucket(Bucket=bucket,
                             CreateBucketConfiguration={"LocationConstraint": REGION})
        boto3.client("glue", region_name=REGION).create_database(DatabaseInput={"Name": "platform"})
        sqs = boto3.client("sqs", region_name=REGION)
        dlq = sqs.create_queue(QueueName="raw-events-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName="raw-events", Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket="raw-bucket", NotificationConfiguration={
            "QueueConfigurations": [{
                "QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "raw/"}]}}}]})
        monkeypatch.setenv("PLATFORM_RAW_EVENTS_QUEUE_URL", queue)
        yield Env(s3, sqs, queue, dlq)


def record(key, sequencer, name="ObjectCreated:Put", bucket="raw-bucket"):
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
            "eventTime": "2026-11-20T10:00:00.000Z",
            "s3": {"bucket": {"name": bucket}, "object": {
                "key": key.replace(" ", "+"), "size": 1, "eTag": "x", "sequencer": sequencer}}}


def launched(requests):
    return sorted(k for r in requests for k in json.loads(json.dumps(
        r.run_config))["ops"]["cleaned__orders"]["config"]["versions"])


def test_an_upload_is_launched_from_its_event_and_acknowledged_after_the_cursor(env):
    env.upload("orders/a b.csv", rows(range(1, 6)))
    requests, _, _ = env.tick()
    assert launched(requests) == ["a b.csv"]
    assert env.instance.get_dynamic_partitions("raw_orders") == ["a b.csv"]
    assert env.depth() >= 1  # received, not yet deleted: the cursor is not saved yet
    assert env.tick()[0] == [] and env.depth() == 0  # the cursor is saved: deleted now
    # Sized by its input: a few hundred bytes get the smallest task.
    size = env.s3.head_object(Bucket="raw-bucket", Key="raw/orders/a b.csv")["ContentLength"]
    assert requests[0].tags["platform/input_bytes"] == str(size)
    assert (requests[0].tags["ecs/cpu"], requests[0].tags["ecs/memory"]) == ("256", "1024")
    result = env.execute(requests[0])
    assert result.success
    (mat,) = [m for m in result.asset_materializations_for_node("table__orders")]
    assert mat.metadata["estimated_cost_usd"].value > 0
    assert mat.metadata["billed_seconds"].value >= 60  # Fargate's one-minute minimum
    from data_platform.resources import GlueCatalog
    table = GlueCatalog(database="platform", workgroup="platform").iceberg().load_table(
        ("platform", "orders"))
    assert table.scan().to_arrow().num_rows == 5


def test_duplicates_reordered_foreign_and_test_events(env):
    env.upload("orders/a.csv", rows([1]))
    env.tick()
    env.tick()  # acknowledged
    env.upload("orders/a.csv", rows([1, 2]))  # a new version; its own event is in the queue
    newest = env.s3.head_object(Bucket="raw-bucket", Key="raw/orders/a.csv")
    # S3 may deliver twice and out of order; a test event; another prefix; another bucket.
    env.send({"Records": [record("raw/orders/a.csv", "0B")]})
    env.send({"Records": [record("raw/orders/a.csv", "0A")]})
    env.send({"Records": [record("raw/orders/a.csv", "0B")]})
    env.send({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "raw-bucket"})
    env.send({"Records": [record("elsewhere/x.csv", "01")]})
    env.send({"Records": [record("raw/orders/y.csv", "01", bucket="other-bucket")]})
    requests, skip, _ = env.tick()
    assert [r.partition_key for r in requests] == ["a.csv"]  # one run, the newest version
    (version,) = requests[0].run_config["ops"]["cleaned__orders"]["config"]["versions"].values()
    assert version["signature"] == _info("a.csv", newest["ContentLength"],
                                         newest["LastModified"], newest["ETag"]).signature
    env.tick()
    assert env.depth() == 0
    # A redelivery of an event already handled launches nothing.
    env.send({"Records": [record("raw/orders/a.csv", "0B")]})
    requests, skip, _ = env.tick()
    assert requests == []


def test_a_removed_object_launches_nothing_and_a_new_upload_is_new(env):
    env.upload("orders/a.csv", rows([1]))
    assert len(env.tick()[0]) == 1
    env.s3.delete_object(Bucket="raw-bucket", Key="raw/orders/a.csv")
    assert env.tick()[0] == []
    env.tick()
    handled = sensor_state(env.instance, env.cursor)
    assert handled.get("flush", {}) == {}
    env.upload("orders/a.csv", rows([1]))  # the same bytes again: a new version
    requests, _, _ = env.tick()
    assert [r.partition_key for r in requests] == ["a.csv"]


def test_a_tick_replayed_after_a_crash_requests_the_same_runs(env):
    """The daemon died after the sensor returned and before it saved the cursor: the messages
    were not deleted, reappear, and the replayed tick decides the same (same run keys, which the
    daemon drops if the first attempt had submitted them)."""
    env.upload("orders/a.csv", rows([1]))
    start = env.cursor
    first, _, _ = env.tick(cursor=start)  # the runs were submitted, the cursor not saved
    assert first
    time.sleep(1.5)  # the visibility timeout passes: the messages come back
    again, _, saved = env.tick(cursor=start)
    assert again == []  # same run keys: dropped as the daemon drops them
    assert len(env.instance.get_runs()) == len(first)
    env.cursor = saved
    assert env.tick()[0] == [] and env.depth() == 0


def test_a_redelivery_after_the_visibility_timeout_is_found_handled(env):
    env.upload("orders/a.csv", rows([1]))
    assert len(env.tick()[0]) == 1
    time.sleep(1.5)  # not acknowledged in time: redelivered
    requests, _, _ = env.tick()
    assert requests == []
    env.tick()
    assert env.depth() == 0


def test_poison_messages_go_to_the_dead_letter_queue(env):
    env.sqs.send_message(QueueUrl=env.queue_url, MessageBody="not json")
    env.tick()
    time.sleep(1.2)
    env.tick()
    time.sleep(1.2)
    env.tick()
    assert env.depth(env.dlq_url) == 1


def test_reconciliation_catches_a_lost_event_without_redoing_handled_files(env, monkeypatch):
    monkeypatch.setenv("PLATFORM_SENSOR_RECONCILE_GRACE_SECONDS", "0")
    env.s3.put_bucket_notification_configuration(Bucket="raw-bucket",
                                                  NotificationConfiguration={})
    env.upload("orders/lost.csv", rows([1]))  # no event: notifications were off
    requests, _, _ = env.tick()  # the first tick reconciles
    assert launched(requests) == ["lost.csv"]
    env.upload("orders/lost-too.csv", rows([2]))
    assert env.tick()[0] == []  # within the reconciliation interval: not seen yet
    monkeypatch.setenv("PLATFORM_SENSOR_RECONCILE_SECONDS", "0")
    requests, _, _ = env.tick()
    assert launched(requests) == ["lost-too.csv"]
    assert env.tick()[0] == []


def test_a_reconciliation_pass_is_spread_over_ticks(env, monkeypatch):
    monkeypatch.setenv("PLATFORM_SENSOR_RECONCILE_GRACE_SECONDS", "0")
    monkeypatch.setenv("PLATFORM_SENSOR_RECONCILE_OBJECTS_PER_TICK", "2")
    env.s3.put_bucket_notification_configuration(Bucket="raw-bucket",
                                                  NotificationConfiguration={})
    for i in range(5):
        env.upload(f"orders/lost-{i}.csv", rows([i]))
    per_tick = [launched(env.tick()[0]) for _ in range(4)]
    assert per_tick == [["lost-0.csv", "lost-1.csv"], ["lost-2.csv", "lost-3.csv"],
                        ["lost-4.csv"], []]
    assert "after" not in sensor_state(env.instance, env.cursor)["reconcile"]


def test_a_burst_does_not_make_another_datasets_single_file_wait(env, monkeypatch):
    """A burst of uploads to orders (6 ticks' worth), then one to penguins: the first tick reads
    every event into the backlog and launches the penguins file with the orders files the
    budget leaves; the rest drain from the backlog. Objects are put through moto's in-process
    backend (which sends the notifications as for any put); moto's ReceiveMessage scans the
    whole queue each call (~1 s a call with 1,000 messages queued), so the burst is 300 files
    against a budget of 50 rather than 10,000 against 1,000. Runs are not recorded (see
    test_sensor_fairness.py, where listing mode drains a 10,000-file backlog)."""
    from moto.s3.models import s3_backends

    monkeypatch.setenv("PLATFORM_SENSOR_MAX_FILES_PER_TICK", "50")
    monkeypatch.setenv("PLATFORM_SENSOR_QUEUE_VISIBILITY_SECONDS", "600")
    backend = s3_backends["123456789012"]["aws"]
    for i in range(300):
        backend.put_object("raw-bucket", f"raw/orders/burst/{i:05d}.csv", b"x")
    backend.put_object("raw-bucket", "raw/penguins/one.csv", b"studyName\nPAL0708\n")

    def files(requests, ds):
        return sum(int(r.tags["platform/files"]) for r in requests
                   if r.tags["platform/dataset"] == ds)

    requests, skip, cursor = tick(env.defs, env.instance, None, submit=False)
    assert (files(requests, "penguins"), files(requests, "orders")) == (1, 49)
    assert len(sensor_state(env.instance, cursor)["backlog"]["orders"]) == 251
    total = 49
    for _ in range(7):
        requests, skip, cursor = tick(env.defs, env.instance, cursor, submit=False)
        total += files(requests, "orders")
    assert total == 300 and sensor_state(env.instance, cursor)["backlog"] == {}
    assert env.depth() == 0  # every message acknowledged once its tick was saved


def test_fair_shares_never_starve_a_small_dataset():
    assert fair_shares({"big": 10_000, "small": 1}, 1000) == {"big": 999, "small": 1}
    assert fair_shares({"a": 5, "b": 5}, 4) == {"a": 2, "b": 2}
    assert fair_shares({"a": 0, "b": 3}, 10) == {"a": 0, "b": 3}
    assert sum(fair_shares({"a": 7, "b": 300, "c": 40}, 100).values()) == 100
