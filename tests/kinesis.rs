//! `flowlog run` with the Kinesis source against moto server's Kinesis and DynamoDB
//! (records put as a CloudWatch Logs subscription puts them, by `scripts/kinesis_fixture.py`)
//! into the file sink: one process reads a 4-shard stream of 200k lines whole; two
//! processes on one lease table split the shards two and two; `kill -9` of one of them,
//! mid-stream, and the other takes its shards over from their checkpoints. Every line is
//! unique (its packets count) and names its shard (its interface id), so what arrived
//! twice, and from which shard, is counted.
//!
//! A shard split during a run (parents read to their end before their children, order per
//! partition key kept) is tested on the source itself, in `sources/kinesis/src/source.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use std::time::{Duration, Instant};

use common::runs;
use common::{manifest_dir, tempdir};
use serde_json::Value;

const SHARDS: usize = 4;
const LINES_PER_RECORD: usize = 50;

fn endpoint() -> String {
    std::env::var("FLOWLOG_MOTO_ENDPOINT")
        .expect("FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server")
}

fn fixture(args: &[&str]) -> Vec<u8> {
    let script = manifest_dir().join("scripts/kinesis_fixture.py");
    common::run_python(std::iter::once(script.as_os_str()).chain(args.iter().map(|a| a.as_ref())))
}

/// A stream of the test's own (moto keeps state between runs), and its lease table.
struct Stream {
    name: String,
    app: String,
}

impl Stream {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{test}-{}-{nanos}", std::process::id());
        Self {
            app: name.clone(),
            name,
        }
    }

    /// Puts `records` records (each `LINES_PER_RECORD` lines) from record `first` on.
    fn put(&self, first: usize, records: usize) -> usize {
        let out = fixture(&[
            "put",
            &endpoint(),
            &self.name,
            &SHARDS.to_string(),
            &records.to_string(),
            &LINES_PER_RECORD.to_string(),
            &first.to_string(),
        ]);
        let put: Value = serde_json::from_slice(&out).unwrap();
        put["lines"].as_u64().unwrap() as usize
    }

    /// Each lease's owner, by shard.
    fn owners(&self) -> BTreeMap<String, Option<String>> {
        self.leases("owner")
    }

    /// Each lease's `field` (`owner`, `checkpoint`), by shard.
    fn leases(&self, field: &str) -> BTreeMap<String, Option<String>> {
        let out = fixture(&["leases", &endpoint(), &format!("flowlog-{}", self.app)]);
        let leases: Vec<Value> = serde_json::from_slice(&out).unwrap();
        leases
            .iter()
            .map(|l| {
                (
                    l["key"].as_str().unwrap().to_owned(),
                    l[field].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// The config of one process: its own data dir and output file, and with `api` its
    /// metrics at that address.
    fn config(&self, dir: &Path, api: Option<&str>) -> PathBuf {
        let config = dir.join("flowlog.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
shutdown_timeout_secs = 10
[api]
{api}
[sources.vpc]
type = "kinesis"
stream_name = "{stream}"
application_name = "{app}"
region = "us-east-1"
endpoint_url = "{endpoint}"
lease_duration_secs = 6
idle_poll_secs = 0.2
[sinks.out]
type = "file"
path = "{out}"
"#,
                data = dir.join("data").display(),
                api = api
                    .map(|a| format!("address = \"{a}\""))
                    .unwrap_or_default(),
                stream = self.name,
                app = self.app,
                endpoint = endpoint(),
                out = dir.join("out.ndjson").display(),
            ),
        )
        .unwrap();
        config
    }
}

/// A loopback address with a port free a moment ago.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The series `name{...}` in the `/metrics` at `address`: each one's labels and value.
fn series(address: &str, name: &str) -> Vec<(String, f64)> {
    let text = common::http_get(address, "/metrics").expect("/metrics answers");
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").unwrap();
            (labels.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// `flowlog ARGS` with moto's test credentials.
fn flowlog(args: &[&str], config: &Path) -> Command {
    let mut command = runs::flowlog(args, config);
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    command
}

/// A running `flowlog run`, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Whether `owner` (a worker id: `<host>:<pid>:<start>`) is this process.
    fn owns(&self, owner: &Option<String>) -> bool {
        owner
            .as_deref()
            .is_some_and(|o| o.contains(&format!(":{}:", self.0.id())))
    }

    /// SIGTERM, as an orchestrator stops it: whether it ended well, and what it logged.
    fn stop(mut self, config: &Path) -> (bool, String) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let status = self.0.wait().unwrap();
        let logged = std::fs::read_to_string(runs::stderr_file(config)).unwrap_or_default();
        (status.success(), logged)
    }
}

/// The lines in `dir`'s output: (packets, shard) of each whole line written.
fn delivered(dir: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(dir.join("out.ndjson")).unwrap_or_default();
    text.split_inclusive('\n')
        // A kill -9 may leave a last line half written.
        .filter(|l| l.ends_with('\n'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let eni = v["interface_id"].as_str().unwrap();
            let shard = u64::from_str_radix(eni.trim_start_matches("eni-"), 16).unwrap();
            (v["packets"].as_u64().unwrap(), shard)
        })
        .collect()
}

/// How many times each line arrived, over `dirs`.
fn arrivals(dirs: &[&Path]) -> HashMap<u64, (usize, u64)> {
    let mut seen: HashMap<u64, (usize, u64)> = HashMap::new();
    for dir in dirs {
        for (packets, shard) in delivered(dir) {
            seen.entry(packets).or_insert((0, shard)).0 += 1;
        }
    }
    seen
}

/// Waits (checking every 100 ms, failing after `most`) until `done`.
fn wait_until(what: &str, most: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < most, "waited {most:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn one_process_reads_a_four_shard_stream_of_200k_lines_whole() {
    let stream = Stream::new("one-process");
    let lines = stream.put(0, 4000);
    assert_eq!(lines, 200_000);
    let dir = tempdir();
    let config = stream.config(&dir, None);
    let (ok, printed) = runs::run_to_end(flowlog(&["run", "--once"], &config));
    assert!(ok, "{printed}");
    let seen = arrivals(&[&dir]);
    assert_eq!(seen.len(), lines, "every line once");
    assert!(seen.values().all(|(n, _)| *n == 1), "a line arrived twice");
    assert!(
        runs::dead_letters(&dir).is_empty(),
        "the control message is not a dead letter"
    );
    // Every lease given up at the end of the run, checkpointed.
    let owners = stream.owners();
    assert_eq!(owners.len(), SHARDS);
    assert!(owners.values().all(Option::is_none), "{owners:?}");
}

#[test]
fn two_processes_split_the_shards_and_a_killed_ones_are_taken_over_from_its_checkpoints() {
    let stream = Stream::new("two-processes");
    let first = stream.put(0, 2000);
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let (api_a, api_b) = (free_address(), free_address());
    let (config_a, config_b) = (
        stream.config(&dir_a, Some(&api_a)),
        stream.config(&dir_b, Some(&api_b)),
    );

    // One process alone takes every shard and reads the backlog.
    let a = Running(flowlog(&["run"], &config_a).spawn().unwrap());
    wait_until("A to read the backlog", Duration::from_secs(120), || {
        delivered(&dir_a).len() >= first
    });
    let owners = stream.owners();
    assert!(owners.values().all(|o| a.owns(o)), "{owners:?}");
    // ...and checkpoints it: every shard's checkpoint past its start, and still.
    let mut last = BTreeMap::new();
    wait_until("A's checkpoints to settle", Duration::from_secs(60), || {
        let now = stream.leases("checkpoint");
        let settled = now == last
            && now
                .values()
                .all(|c| c.as_deref().is_some_and(|c| c != "TRIM_HORIZON"));
        last = now;
        settled
    });

    // A second process on the same lease table: two shards each.
    let b = Running(flowlog(&["run"], &config_b).spawn().unwrap());
    let split = wait_until("a two-two split", Duration::from_secs(120), || {
        let owners = stream.owners();
        owners.values().filter(|o| a.owns(o)).count() == 2
            && owners.values().filter(|o| b.owns(o)).count() == 2
    });
    eprintln!(
        "two and two {:.1} s after the second process started",
        split.as_secs_f64()
    );
    // Each reports the two leases it holds, and the lag of exactly those two shards (once
    // it has seen the split: the loser at its next renewal).
    let owners = stream.owners();
    let reports_its_shards = |running: &Running, api: &str| {
        let mine: BTreeSet<String> = owners
            .iter()
            .filter(|(_, o)| running.owns(o))
            .map(|(shard, _)| format!("shard=\"{shard}\""))
            .collect();
        let held = series(api, "flowlog_kinesis_leases_held");
        let lag: BTreeSet<String> = series(api, "flowlog_kinesis_millis_behind_latest")
            .into_iter()
            .map(|(labels, _)| labels.rsplit(',').next().unwrap().to_owned())
            .collect();
        held.len() == 1 && held[0].1 == 2.0 && lag == mine
    };
    wait_until(
        "the metrics to show two shards each",
        Duration::from_secs(60),
        || reports_its_shards(&a, &api_a) && reports_its_shards(&b, &api_b),
    );
    // The Grafana dashboard's Kinesis panels query series a reading process exports.
    let scraped = common::http_get(&api_a, "/metrics").unwrap();
    let dashboard = common::dashboard_metric_names();
    let kinesis = dashboard
        .iter()
        .filter(|n| n.starts_with("flowlog_kinesis_"));
    assert_eq!(
        common::missing_metrics(&scraped, kinesis),
        Vec::<&String>::new()
    );

    // More records, put over a few seconds as a stream receives them and read by both; A
    // is killed as soon as it has written some of them.
    let out_a = dir_a.join("out.ndjson");
    let written_before = std::fs::metadata(&out_a).unwrap().len();
    let putter = {
        let name = stream.name.clone();
        std::thread::spawn(move || {
            let stream = Stream {
                app: name.clone(),
                name,
            };
            (0..10)
                .map(|chunk| {
                    std::thread::sleep(Duration::from_millis(300));
                    stream.put(2000 + chunk * 400, 400)
                })
                .sum::<usize>()
        })
    };
    wait_until("A to write new lines", Duration::from_secs(120), || {
        std::fs::metadata(&out_a).unwrap().len() > written_before
    });
    // What A holds as it is killed (a lease could have moved since the split).
    let a_shards: BTreeSet<u64> = stream
        .owners()
        .iter()
        .filter(|(_, o)| a.owns(o))
        .map(|(shard, _)| shard.trim_start_matches("shardId-").parse().unwrap())
        .collect();
    unsafe { libc::kill(a.0.id() as i32, libc::SIGKILL) };
    let on_a_shards = |seen: &HashMap<u64, (usize, u64)>| {
        seen.values()
            .filter(|(_, shard)| a_shards.contains(shard))
            .count()
    };
    let at_kill = arrivals(&[&dir_a, &dir_b]);
    let second = putter.join().unwrap();
    let total = first + second;

    // B takes A's shards once their leases expire, and reads them on from A's checkpoints.
    wait_until("every line", Duration::from_secs(180), || {
        arrivals(&[&dir_a, &dir_b]).len() == total
    });
    let owners = stream.owners();
    assert!(owners.values().all(|o| b.owns(o)), "{owners:?}");
    let (ok, printed) = b.stop(&config_b);
    assert!(ok, "{printed}");

    let seen = arrivals(&[&dir_a, &dir_b]);
    assert_eq!(seen.len(), total, "none lost");
    assert!(
        on_a_shards(&at_kill) < on_a_shards(&seen),
        "A had read all of its shards by the kill: nothing to take over"
    );
    let twice: Vec<(u64, u64)> = seen
        .iter()
        .filter(|(_, (n, _))| *n > 1)
        .map(|(packets, (_, shard))| (*packets, *shard))
        .collect();
    // Only what A had written after its last checkpoint, on its own shards, comes again:
    // once from A, once from B.
    let (by_a, by_b) = (arrivals(&[&dir_a]), arrivals(&[&dir_b]));
    for (packets, shard) in &twice {
        assert!(
            *packets >= first as u64 && a_shards.contains(shard),
            "line {packets} of shard {shard} arrived twice (A held {a_shards:?})"
        );
        assert_eq!(
            (
                by_a.get(packets).map(|a| a.0),
                by_b.get(packets).map(|b| b.0)
            ),
            (Some(1), Some(1)),
            "line {packets}"
        );
    }
    let a_wrote_after: usize = delivered(&dir_a)
        .iter()
        .filter(|(packets, _)| *packets >= first as u64)
        .count();
    eprintln!(
        "kill -9 with {} of {total} lines delivered ({} of A's shards' {}): {} arrived twice, \
         of {a_wrote_after} A wrote after the split",
        at_kill.len(),
        on_a_shards(&at_kill),
        on_a_shards(&seen),
        twice.len()
    );
}
