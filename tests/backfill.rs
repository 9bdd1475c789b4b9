//! The `s3` source on a copy of a bucket (AWS's Hive-compatible, hourly layout under a
//! user prefix): the plan takes only the partitions the range needs, the transform keeps
//! records by their own start, and a second run reads nothing again.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use common::runs::{finish, flowlog};

/// 2026-08-01T00:00:00Z.
const AUGUST_FIRST: i64 = 1_785_542_400;

/// Writes gzip'd objects every 30 minutes from 2026-07-31T12:00Z to 2026-08-02T12:00Z,
/// each with four records starting 1 to 4 minutes before its stamp (and one object of
/// another account); the `bytes` of each record numbers it. The numbers of the records
/// that started on 2026-08-01 UTC.
fn bucket(root: &Path) -> BTreeSet<i64> {
    let mut wanted = BTreeSet::new();
    let mut n = 0;
    let mut stamp = AUGUST_FIRST - 12 * 3600;
    while stamp <= AUGUST_FIRST + 36 * 3600 {
        for account in ["123456789012", "210987654321"] {
            let delivered = stamp + 600;
            let (y, m, d, h) = civil(delivered);
            let (sy, sm, sd, sh) = civil(stamp);
            let minute = stamp % 3600 / 60;
            let key = format!(
                "team/AWSLogs/aws-account-id={account}/aws-service=vpcflowlogs/\
                 aws-region=us-east-1/year={y}/month={m:02}/day={d:02}/hour={h:02}/\
                 {account}_vpcflowlogs_us-east-1_fl-0abc_{sy}{sm:02}{sd:02}T{sh:02}{minute:02}Z_{n:08x}.log.gz"
            );
            let mut text = String::from(
                "version account-id interface-id srcaddr dstaddr srcport dstport protocol \
                 packets bytes start end action log-status\n",
            );
            for back in 1..=4 {
                n += 1;
                let start = stamp - back * 60;
                text.push_str(&format!(
                    "2 {account} eni-1 10.0.0.1 10.0.0.2 443 22 6 1 {n} {start} {} ACCEPT OK\n",
                    start + 60
                ));
                if account == "123456789012"
                    && (AUGUST_FIRST..AUGUST_FIRST + 86_400).contains(&start)
                {
                    wanted.insert(n);
                }
            }
            let path = root.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(text.as_bytes()).unwrap();
            std::fs::write(path, gz.finish().unwrap()).unwrap();
        }
        stamp += 1800;
    }
    wanted
}

/// Year, month, day and hour (UTC) of a time in seconds.
fn civil(secs: i64) -> (i64, u32, u32, i64) {
    let (y, m, d) = flowlog_model::time::civil_from_days(secs.div_euclid(86_400));
    (y, m, d, secs.rem_euclid(86_400) / 3600)
}

fn delivered(out: &Path) -> Vec<i64> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["bytes"].as_i64().unwrap()
        })
        .collect()
}

/// A configuration reading August 1st of account 123456789012 from `url` into
/// `<dir>/out.ndjson`, with `extra` settings for the source.
fn configure(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{dir}/data"
status_interval_secs = 0

[sources.archive]
type = "s3"
url = "{url}"
since = "2026-08-01"
until = "2026-08-02"
accounts = ["123456789012"]
workers = 4
{extra}

[transform.filter]
since = "2026-08-01"
until = "2026-08-02"

[sinks.out]
type = "file"
path = "{dir}/out.ndjson"
"#,
            dir = dir.display(),
        ),
    )
    .unwrap();
    config
}

/// Runs `flowlog run --once` twice: the records of the day each once, and nothing read
/// again by the second run.
fn read_twice(dir: &Path, config: &Path, wanted: &BTreeSet<i64>, env: &[(&str, &str)]) {
    let out = dir.join("out.ndjson");
    for _ in 0..2 {
        let mut command = flowlog(&["run", "--once"], config);
        command.envs(env.iter().copied());
        let (ok, stderr) = finish(command.spawn().unwrap(), config);
        assert!(ok, "{stderr}");
        let got = delivered(&out);
        assert_eq!(got.len(), wanted.len(), "each record once");
        assert_eq!(&got.into_iter().collect::<BTreeSet<_>>(), wanted);
    }
}

#[test]
fn a_day_is_read_from_a_copied_bucket_and_not_read_twice() {
    let dir = common::tempdir();
    let wanted = bucket(&dir);
    let url = dir.join("team").display().to_string();
    let config = configure(&dir, &url, "");
    read_twice(&dir, &config, &wanted, &[]);
}

/// Puts the tree under `<root>/team` into a new bucket (`endpoint bucket root`).
const UPLOAD: &str = r#"
import boto3, os, sys
endpoint, bucket, root = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
for top, _, files in os.walk(os.path.join(root, "team")):
    for f in files:
        path = os.path.join(top, f)
        s3.upload_file(path, bucket, os.path.relpath(path, root))
"#;

#[test]
fn a_day_is_read_from_s3_through_the_sdk() {
    let endpoint = std::env::var("FLOWLOG_MOTO_ENDPOINT").expect(
        "FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server",
    );
    let dir = common::tempdir();
    let wanted = bucket(&dir);
    let name = format!("backfill-{}", std::process::id());
    // The tree goes up with boto3, as `aws s3 sync` would put it.
    let upload = std::process::Command::new(common::python())
        .arg("-c")
        .arg(UPLOAD)
        .args([&endpoint, &name, &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        upload.status.success(),
        "{}",
        String::from_utf8_lossy(&upload.stderr)
    );
    let extra = format!(
        "endpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\ns3_force_path_style = true"
    );
    let config = configure(&dir, &format!("s3://{name}/team/"), &extra);
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    read_twice(&dir, &config, &wanted, &env);
    // Ids are the SQS source's: the object's bucket, key and ETag, and the line.
    let checkpoints = std::fs::read_to_string(dir.join("data/checkpoints.json")).unwrap();
    assert!(
        checkpoints.contains(&format!(
            "s3://{name}/team/AWSLogs/aws-account-id=123456789012/"
        )) && checkpoints.contains("?etag="),
        "{checkpoints}"
    );
}
