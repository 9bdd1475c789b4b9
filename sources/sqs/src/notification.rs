//! What an SQS message body announces: the S3 objects to read, or nothing to read.
//!
//! Five shapes reach a queue (see `protocols.md`): S3's own event notification (several
//! records per message are possible), the same wrapped in an SNS envelope when raw message
//! delivery is off, S3's `s3:TestEvent` (bare or wrapped), an EventBridge `Object Created`
//! event, and a Security Lake subscriber notification (EventBridge's shape without
//! `detail-type`). Anything else is not a notification, and the caller dead-letters it.

use serde::Deserialize;
use serde_json::Value;

pub use flowlog_source_s3::ObjectRef;

/// What a message body announces.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notice {
    /// Objects created: each is read.
    pub objects: Vec<ObjectRef>,
    /// Events with nothing to read (`ObjectRemoved:Delete`, ...), by name: counted.
    pub ignored: Vec<String>,
    /// S3's `s3:TestEvent`, sent once when a notification is configured.
    pub test: bool,
}

/// Reads a message body.
pub fn parse(body: &str) -> Result<Notice, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    parse_value(value, 0)
}

fn parse_value(value: Value, depth: usize) -> Result<Notice, String> {
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    // SNS without raw message delivery: the notification is the `Message` string.
    if field("Type") == Some("Notification") && depth == 0 {
        let message = field("Message").ok_or("an SNS notification without a Message")?;
        let inner: Value = serde_json::from_str(message)
            .map_err(|e| format!("the SNS Message is not JSON: {e}"))?;
        return parse_value(inner, depth + 1);
    }
    if field("Event") == Some("s3:TestEvent") {
        return Ok(Notice {
            test: true,
            ..Notice::default()
        });
    }
    if value.get("Records").is_some() {
        let event: S3Event = serde_json::from_value(value)
            .map_err(|e| format!("not an S3 event notification: {e}"))?;
        return s3_event(event);
    }
    if field("source") == Some("aws.s3") && value.get("detail").is_some() {
        let detail_type = field("detail-type").map(str::to_string);
        let event: EventBridgeEvent = serde_json::from_value(value)
            .map_err(|e| format!("not an S3 EventBridge event: {e}"))?;
        return Ok(eventbridge(event, detail_type));
    }
    Err("not an S3 event notification (no Records, no S3 detail, not a test event)".into())
}

#[derive(Deserialize)]
struct S3Event {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_version: String,
    event_source: String,
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
}

fn s3_event(event: S3Event) -> Result<Notice, String> {
    let mut notice = Notice::default();
    for record in event.records {
        if record.event_source != "aws:s3" {
            return Err(format!(
                "a record from {} rather than aws:s3",
                record.event_source
            ));
        }
        // AWS: a consumer compares the major version for equality, the minor with >=.
        let major = record.event_version.split('.').next().unwrap_or_default();
        if major != "2" {
            return Err(format!(
                "eventVersion {} is not one this reader knows (2.x)",
                record.event_version
            ));
        }
        if !record.event_name.starts_with("ObjectCreated:") {
            notice.ignored.push(record.event_name);
            continue;
        }
        let object = record.s3.object;
        notice.objects.push(ObjectRef {
            bucket: record.s3.bucket.name,
            key: form_decode(&object.key)?,
            raw_key: None,
            version_id: object.version_id.filter(|v| !v.is_empty()),
            etag: object.e_tag.filter(|e| !e.is_empty()),
            size: object.size,
        });
    }
    Ok(notice)
}

#[derive(Deserialize)]
struct EventBridgeEvent {
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Bucket,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    size: Option<u64>,
    // moto spells it as S3's own notifications do.
    #[serde(alias = "eTag")]
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
}

/// EventBridge's `Object Created` (and Security Lake's notification, which has no
/// `detail-type`). Whether its key is URL-encoded is not documented: it is form-decoded
/// when it holds `%XX` or `+`, and the key as written is kept to try next. An unversioned
/// bucket's object has the version id `null`, which names nothing more than no version.
fn eventbridge(event: EventBridgeEvent, detail_type: Option<String>) -> Notice {
    if let Some(kind) = detail_type.filter(|kind| kind != "Object Created") {
        return Notice {
            ignored: vec![kind],
            ..Notice::default()
        };
    }
    let object = event.detail.object;
    let (key, raw_key) = match form_decode(&object.key) {
        Ok(decoded) if decoded != object.key => (decoded, Some(object.key)),
        _ => (object.key, None),
    };
    Notice {
        objects: vec![ObjectRef {
            bucket: event.detail.bucket.name,
            key,
            raw_key,
            version_id: object.version_id.filter(|v| !v.is_empty() && v != "null"),
            etag: object.etag.filter(|e| !e.is_empty()),
            size: object.size,
        }],
        ..Notice::default()
    }
}

/// S3 writes keys in notifications form-encoded: `+` is a space, then `%XX` escapes.
fn form_decode(key: &str) -> Result<String, String> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("the key {key:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        // The run-time manifest dir: a shared target dir may hold another checkout's build.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let path = manifest
            .join("../../../shared/fixtures/s3-notifications")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn object(bucket: &str, key: &str, version: Option<&str>, etag: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            raw_key: None,
            version_id: version.map(Into::into),
            etag: etag.map(Into::into),
            size: None,
        }
    }

    fn objects(notice: &Notice) -> Vec<(String, String, Option<String>)> {
        notice
            .objects
            .iter()
            .map(|o| (o.bucket.clone(), o.key.clone(), o.version_id.clone()))
            .collect()
    }

    #[test]
    fn direct_s3_notifications_name_their_objects() {
        let notice = parse(&fixture("aws_doc_s3_objectcreated_put.json")).unwrap();
        assert_eq!(
            objects(&notice),
            [(
                "mybucket".into(),
                "HappyFace.jpg".into(),
                Some("096fKKXTRTtl3on89fVO.nfljtsv6qko".into())
            )]
        );
        assert_eq!(notice.objects[0].size, Some(1024));
        // The escaped key is decoded; Powertools' own `urlDecodedKey` is not needed.
        let notice = parse(&fixture("powertools_s3EventDecodedKey.json")).unwrap();
        assert_eq!(notice.objects[0].key, "Happy Face.jpg");
        for name in [
            "powertools_s3Event.json",
            "vector_s3_objectcreated_put.json",
        ] {
            let notice = parse(&fixture(name)).unwrap();
            assert_eq!(notice.objects.len(), 1, "{name}");
            assert!(notice.objects[0].etag.is_some(), "{name}");
        }
    }

    #[test]
    fn real_vpc_flow_log_notifications_decode_to_their_keys() {
        let bodies: Vec<Value> =
            serde_json::from_str(&fixture("real_vpcflow_s3_objectcreated_bodies.json")).unwrap();
        assert!(bodies.len() > 1);
        for body in bodies {
            let notice = parse(&body.to_string()).unwrap();
            assert_eq!(notice.objects.len(), 1);
            let key = &notice.objects[0].key;
            assert!(
                key.contains("vpcflowlogs") && key.ends_with(".log.gz"),
                "{key}"
            );
        }
    }

    #[test]
    fn test_events_bare_or_wrapped_by_sns_read_nothing() {
        for name in [
            "aws_doc_s3_testevent.json",
            "vector_s3_testevent.json",
            "vector_sns_wrapped_s3_testevent.json",
        ] {
            let notice = parse(&fixture(name)).unwrap();
            assert!(notice.test && notice.objects.is_empty(), "{name}");
        }
    }

    #[test]
    fn removals_are_counted_not_read_and_hive_keys_are_decoded() {
        let notice = parse(&fixture("oxbow_s3_objectremoved_hive_key.json")).unwrap();
        assert!(notice.objects.is_empty());
        assert_eq!(notice.ignored, ["ObjectRemoved:Delete"]);
        assert_eq!(
            form_decode("AWSLogs/aws-account-id%3D1234/a+b%2Bc.log.gz").unwrap(),
            "AWSLogs/aws-account-id=1234/a b+c.log.gz"
        );
    }

    #[test]
    fn sqs_bodies_inside_lambda_batches_are_understood_or_refused() {
        // Lambda's SQS event: each record's `body` is what sat on the queue.
        let lambda: Value = serde_json::from_str(&fixture("powertools_s3SqsEvent.json")).unwrap();
        let body = lambda["Records"][0]["body"].as_str().unwrap();
        assert_eq!(objects(&parse(body).unwrap())[0].1, "test.pdf");
        // An SNS notification whose message is not an S3 event is refused, with why.
        let lambda: Value = serde_json::from_str(&fixture("powertools_snsSqsEvent.json")).unwrap();
        let body = lambda["Records"][0]["body"].as_str().unwrap();
        let err = parse(body).unwrap_err();
        assert!(err.contains("not an S3 event notification"), "{err}");
        // The Lambda batch itself is no notification either.
        assert!(parse(&lambda.to_string()).is_err());
    }

    #[test]
    fn eventbridge_and_security_lake_events_name_their_object() {
        let notice = parse(&fixture("aws_doc_eventbridge_object_created.json")).unwrap();
        assert_eq!(
            notice.objects,
            [ObjectRef {
                size: Some(5),
                ..object(
                    "amzn-s3-demo-bucket1",
                    "example-key",
                    Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"),
                    Some("b1946ac92492d2347c6235b4d2611184")
                )
            }]
        );
        let notice = parse(&fixture(
            "securitylake_subscriber_sqs_message_from_beats_issue_36630.json",
        ))
        .unwrap();
        assert_eq!(notice.objects[0].bucket, "aws-security-data-lake-us-west-2");
        assert!(notice.objects[0]
            .key
            .ends_with("eventDay=20230916/test.gz.parquet"));
        // An encoded EventBridge key is decoded, and kept as written to try second.
        let mut event: Value =
            serde_json::from_str(&fixture("aws_doc_eventbridge_object_created.json")).unwrap();
        event["detail"]["object"]["key"] = "day%3D01/a+b.log".into();
        let notice = parse(&event.to_string()).unwrap();
        assert_eq!(notice.objects[0].key, "day=01/a b.log");
        assert_eq!(
            notice.objects[0].raw_key.as_deref(),
            Some("day%3D01/a+b.log")
        );
        // An unversioned bucket's `null` version is no version; moto's `eTag` is the ETag.
        event["detail"]["object"]["version-id"] = "null".into();
        let object = event["detail"]["object"].as_object_mut().unwrap();
        let etag = object.remove("etag").unwrap();
        object.insert("eTag".into(), etag);
        let notice = parse(&event.to_string()).unwrap();
        assert_eq!(notice.objects[0].version_id, None);
        assert_eq!(
            notice.objects[0].etag.as_deref(),
            Some("b1946ac92492d2347c6235b4d2611184")
        );
        event["detail-type"] = "Object Deleted".into();
        assert_eq!(
            parse(&event.to_string()).unwrap().ignored,
            ["Object Deleted"]
        );
    }

    #[test]
    fn what_is_not_a_notification_is_refused_with_a_reason() {
        for (body, needle) in [
            ("not json", "not JSON"),
            ("{\"hello\": 1}", "not an S3 event notification"),
            (
                r#"{"Records":[{"eventVersion":"3.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#,
                "eventVersion 3.0",
            ),
            (
                r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:sqs","eventName":"x","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#,
                "aws:sqs",
            ),
            (
                r#"{"Type":"Notification","Message":"{\"Type\":\"Notification\",\"Message\":\"{}\"}"}"#,
                "not an S3 event notification",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn identities_name_the_version_or_the_etag() {
        assert_eq!(
            object("b", "k/x.gz", Some("v1"), Some("e")).identity(),
            "s3://b/k/x.gz?versionId=v1"
        );
        assert_eq!(
            object("b", "k", None, Some("e1")).identity(),
            "s3://b/k?etag=e1"
        );
        assert_eq!(object("b", "k", None, None).identity(), "s3://b/k");
    }
}
