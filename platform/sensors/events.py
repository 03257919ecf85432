"""S3 event notifications from an SQS queue: what queue mode reads instead of listing raw/.

S3 sends one message per event (object created by put, copy or multipart completion; object
removed), at least once and in no guaranteed order; per key, the `sequencer` orders events
(hex strings of varying length: compare after left-padding). A bucket also sends
`s3:TestEvent` when notifications are configured. Messages are never deleted here before the
sensor has durably recorded what they said (see state.py): `receive` hands out the receipt
handles, `acknowledge` deletes them a tick later. A message that cannot be parsed is left alone:
after the queue's maxReceiveCount deliveries SQS moves it to the dead-letter queue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from urllib.parse import unquote_plus

import boto3

from ..resources.s3 import BOTO_CONFIG, split_s3_url

CREATED, REMOVED = "created", "removed"


class PoisonMessage(ValueError):
    """A message that is not an S3 event notification (left for the dead-letter queue)."""


@dataclasses.dataclass(frozen=True)
class ObjectEvent:
    """One S3 event on one object of the raw bucket."""

    kind: str  # CREATED or REMOVED
    bucket: str
    key: str  # the full object key, decoded
    sequencer: str  # "" when absent
    time_ns: int  # the event's time
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None

    def order(self) -> tuple:
        """Sort key among events of one key: the sequencer, then the event time."""
        return (self.sequencer.rjust(32, "0"), self.time_ns)


def _time_ns(text: str | None) -> int:
    if not text:
        return 0
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp() * 1e6) * 1000


def parse_message(body: str) -> list[ObjectEvent]:
    """The object events in one SQS message body (empty for a test event or other S3 events).
    Raises PoisonMessage for a body that is not an S3 notification."""
    try:
        data = json.loads(body)
    except ValueError:
        raise PoisonMessage("not JSON") from None
    if not isinstance(data, dict):
        raise PoisonMessage("not a JSON object")
    if data.get("Event") == "s3:TestEvent":
        return []
    if "Message" in data and "TopicArn" in data:  # delivered through SNS
        return parse_message(data["Message"])
    records = data.get("Records")
    if not isinstance(records, list):
        raise PoisonMessage("no Records")
    out = []
    for r in records:
        try:
            name = r["eventName"]
            obj, bucket = r["s3"]["object"], r["s3"]["bucket"]["name"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError):
            raise PoisonMessage("a record without eventName, bucket or object key") from None
        if name.startswith("ObjectCreated:"):
            kind = CREATED
        elif name.startswith("ObjectRemoved:"):
            kind = REMOVED
        else:
            continue  # restore, tagging, ACL, lifecycle transitions: nothing to ingest
        try:
            when = _time_ns(r.get("eventTime"))
        except ValueError:
            raise PoisonMessage(f"bad eventTime {r.get('eventTime')!r}") from None
        out.append(ObjectEvent(kind, bucket, key, str(obj.get("sequencer") or ""), when,
                               obj.get("size"), obj.get("eTag"), obj.get("versionId")))
    return out


@dataclasses.dataclass
class Received:
    """One tick's harvest: the events, the receipts to acknowledge once recorded, the poison
    messages left for the dead-letter queue, and the calls it took."""

    events: list[ObjectEvent] = dataclasses.field(default_factory=list)
    receipts: list[str] = dataclasses.field(default_factory=list)
    poison: list[str] = dataclasses.field(default_factory=list)  # message id: why
    calls: int = 0


class EventQueue:
    """The raw-upload event queue (SQS)."""

    def __init__(self, url: str, client=None):
        self.url = url
        self.client = client or boto3.session.Session().client(
            "sqs", region_name=_region(url), config=BOTO_CONFIG)

    def receive(self, max_messages: int, *, visibility_s: int, wait_s: int = 1,
                budget_s: float = 20.0) -> Received:
        """Receive up to `max_messages` messages (10 per call) within `budget_s` seconds,
        hiding them for `visibility_s` (longer than a tick, so that they are acknowledged
        before they reappear)."""
        out = Received()
        deadline = time.monotonic() + budget_s
        got = 0
        while got < max_messages and time.monotonic() < deadline:
            resp = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=min(10, max_messages - got),
                VisibilityTimeout=visibility_s, WaitTimeSeconds=wait_s if got == 0 else 0,
                MessageSystemAttributeNames=["ApproximateReceiveCount"])
            out.calls += 1
            messages = resp.get("Messages") or []
            if not messages:
                break
            for m in messages:
                got += 1
                try:
                    out.events.extend(parse_message(m.get("Body") or ""))
                except PoisonMessage as e:
                    count = (m.get("Attributes") or {}).get("ApproximateReceiveCount", "?")
                    out.poison.append(f"{m.get('MessageId')}: {e} (received {count} times)")
                    continue
                out.receipts.append(m["ReceiptHandle"])
        return out

    def acknowledge(self, receipts: list[str]) -> int:
        """Delete the messages of these receipts (10 per call); returns the calls made. A
        receipt that expired meanwhile fails quietly: its message comes back and is found
        handled already."""
        calls = 0
        for i in range(0, len(receipts), 10):
            chunk = receipts[i:i + 10]
            self.client.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(chunk)])
            calls += 1
        return calls


def _region(url: str) -> str | None:
    host = url.split("//", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else None


def raw_relative(event: ObjectEvent, raw_url: str) -> str | None:
    """The event's key relative to the raw zone (`<dataset>/<file>`), or None when the event is
    about another bucket or a key outside the raw prefix."""
    bucket, prefix = split_s3_url(raw_url)
    if event.bucket != bucket:
        return None
    prefix = prefix.strip("/")
    if not prefix:
        return event.key
    head = prefix + "/"
    return event.key[len(head):] if event.key.startswith(head) else None
