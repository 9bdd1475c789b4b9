//! `flowlog query` end to end: the same answers as DuckDB (PyPI) on the same files, from a
//! mixed directory and from the same objects in moto's S3; partitions narrowed by time;
//! spilling under a memory limit; lines that are not records; output formats read back
//! by pyarrow.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ACCOUNT: &str = "123456789012";

/// The three kinds of question the comparison asks: a filter and a count, a group-by
/// with sums, a top-N.
const QUERIES: [&str; 3] = [
    "SELECT count(*) AS n FROM flows WHERE action = 'REJECT' AND dstport IN (22, 3389)",
    "SELECT interface_id, action, count(*) AS flows, sum(packets) AS packets, \
     sum(bytes) AS bytes FROM flows GROUP BY interface_id, action \
     ORDER BY interface_id, action",
    "SELECT srcaddr, dstaddr, sum(bytes) AS bytes FROM flows WHERE log_status = 'OK' \
     GROUP BY srcaddr, dstaddr ORDER BY bytes DESC, srcaddr, dstaddr LIMIT 20",
];

fn generate(lines: usize, format: &str, seed: u32) -> String {
    let script = common::manifest_dir().join("../shared/bench/gen_flowlogs.py");
    let out = common::run_python([
        script.to_str().unwrap(),
        &lines.to_string(),
        "--format",
        format,
        "--seed",
        &seed.to_string(),
    ]);
    String::from_utf8(out).unwrap()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

const V2_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport \
                         protocol packets bytes start end action log-status\n";

/// Four files as they come: v2 text without a header (CloudWatch Logs' export), v5 with
/// its header, a gzip'd S3 object with its header, and Parquet as AWS writes it.
fn mixed(dir: &Path, lines: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let plain = dir.join("exported.log");
    std::fs::write(&plain, generate(lines, "v2", 1)).unwrap();
    let v5 = dir.join("custom-v5.log");
    std::fs::write(&v5, generate(lines, "v5", 2)).unwrap();
    let gz = dir.join("object.log.gz");
    std::fs::write(
        &gz,
        gzip(&format!("{V2_HEADER}{}", generate(lines, "v2", 3))),
    )
    .unwrap();
    let text = dir.join("for-parquet.txt");
    std::fs::write(&text, generate(lines, "v2", 4)).unwrap();
    let parquet = dir.join("object.log.parquet");
    peer(&["parquet", text.to_str().unwrap(), parquet.to_str().unwrap()]);
    std::fs::remove_file(&text).unwrap();
    vec![plain, v5, gz, parquet]
}

fn peer(args: &[&str]) -> Vec<u8> {
    let script = common::manifest_dir().join("scripts/duckdb_peer.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    common::run_python(all)
}

/// DuckDB's answers to `queries` over every file under `root`.
fn duckdb(root: &Path, queries: &[&str]) -> Vec<Vec<Value>> {
    let mut args = vec!["answer", root.to_str().unwrap()];
    args.extend_from_slice(queries);
    let out = peer(&args);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn query(sql: &str, inputs: &[&str], extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog"));
    command.arg("query").arg(sql).args(inputs).args(extra);
    command
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    command
}

fn ok(mut command: Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        command.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// flowlog's answer to `sql` as rows (NDJSON), numbers as DuckDB's JSON has them.
fn answer(sql: &str, inputs: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let mut command = query(sql, inputs, extra);
    command.args(["--format", "ndjson"]);
    for (k, v) in env {
        command.env(k, v);
    }
    common::ndjson(&ok(command).stdout)
}

#[test]
fn answers_like_duckdb_on_a_mixed_directory() {
    let dir = common::tempdir();
    let root = dir.join("archive");
    mixed(&root.join("2025/11"), 20_000);
    let peer = duckdb(&root, &QUERIES);
    for (sql, expected) in QUERIES.iter().zip(&peer) {
        let got = answer(sql, &[root.to_str().unwrap()], &[], &[]);
        assert!(!expected.is_empty());
        assert_eq!(&got, expected, "{sql}");
    }
    // The group-by saw every interface of all four files.
    assert!(peer[1].len() > 100, "{}", peer[1].len());
    // A glob and the files one by one answer the same.
    let glob = format!("{}/2025/*/*", root.display());
    assert_eq!(answer(QUERIES[0], &[&glob], &[], &[]), peer[0]);
}

#[test]
fn answers_from_s3_as_from_the_directory_and_lists_only_the_days_asked_for() {
    let dir = common::tempdir();
    let files = mixed(&dir.join("local"), 5_000);
    // The same objects under AWS's layout in three day folders: folders, not the
    // records in them, decide what is listed.
    let days = ["2025/11/20", "2025/11/21", "2025/11/22", "2025/11/22"];
    let tree = dir.join("tree");
    for (file, day) in files.iter().zip(days) {
        let folder = tree.join(format!("AWSLogs/{ACCOUNT}/vpcflowlogs/us-east-1/{day}"));
        std::fs::create_dir_all(&folder).unwrap();
        let stamp = day.replace('/', "");
        let name = file.file_name().unwrap().to_str().unwrap();
        let extension = name.split_once('.').map_or("log", |(_, e)| e);
        std::fs::copy(
            file,
            folder.join(format!(
                "{ACCOUNT}_vpcflowlogs_us-east-1_fl-0123456789abcdef0_{stamp}T0000Z_{}.{extension}",
                &name[..4]
            )),
        )
        .unwrap();
    }
    let endpoint = std::env::var("FLOWLOG_MOTO_ENDPOINT").expect(
        "FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server",
    );
    let bucket = format!("query-{}", std::process::id());
    common::run_python(["-c", UPLOAD, &endpoint, &bucket, tree.to_str().unwrap()]);
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let url = format!("s3://{bucket}/");
    let s3 = ["--s3-force-path-style"];
    let local = duckdb(&dir.join("local"), &QUERIES);
    for (sql, expected) in QUERIES.iter().zip(&local) {
        assert_eq!(&answer(sql, &[&url], &s3, &env), expected, "{sql}");
    }
    // A bound on `start` lists only the folders it can need (with the hour's margin):
    // the two objects of the 22nd, 10 000 records.
    let mut command = query(
        "SELECT count(*) AS n FROM flows WHERE start >= '2025-11-22T00:00:00Z'",
        &[&url],
        &["--s3-force-path-style", "--stats", "--format", "csv"],
    );
    for (k, v) in env {
        command.env(k, v);
    }
    let out = ok(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("from 2 objects"), "{stderr}");
    assert!(stderr.contains("10000 records"), "{stderr}");
    // So do --since and --region; a region not there lists nothing.
    let mut command = query(
        "SELECT count(*) AS n FROM flows",
        &[&url],
        &[
            "--s3-force-path-style",
            "--stats",
            "--since",
            "2025-11-21T12:00:00Z",
            "--region",
            "eu-west-1",
        ],
    );
    for (k, v) in env {
        command.env(k, v);
    }
    let out = ok(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("from 0 objects"), "{stderr}");
}

const UPLOAD: &str = r#"
import boto3, os, sys
endpoint, name, root = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=name)
for top, _, files in os.walk(root):
    for f in files:
        path = os.path.join(top, f)
        s3.upload_file(path, name, os.path.relpath(path, root))
"#;

#[test]
fn a_group_by_larger_than_the_memory_limit_spills_and_answers_the_same() {
    let dir = common::tempdir();
    let file = dir.join("flows.log");
    std::fs::write(&file, generate(200_000, "v2", 9)).unwrap();
    // About 180 000 groups: their state is several times the limit.
    let sql = "SELECT srcaddr, dstaddr, srcport, dstport, count(*) AS n, sum(bytes) AS b \
               FROM flows GROUP BY 1, 2, 3, 4";
    let input = [file.to_str().unwrap()];
    let spills = dir.join("spills");
    std::fs::create_dir_all(&spills).unwrap();
    let mut limited = query(sql, &input, &["--format", "csv", "--stats"]);
    limited.args(["--memory-limit", "16M", "--temp-directory"]);
    limited.arg(&spills);
    let limited = ok(limited);
    let unlimited = ok(query(
        sql,
        &input,
        &["--format", "csv", "--memory-limit", "2G", "--stats"],
    ));
    let said = String::from_utf8_lossy(&limited.stderr);
    assert!(
        said.contains("181681 rows") && !said.contains("; 0 B spilled"),
        "{said}"
    );
    let unsaid = String::from_utf8_lossy(&unlimited.stderr);
    assert!(unsaid.contains("; 0 B spilled"), "{unsaid}");
    let sorted = |out: &[u8]| {
        let mut lines: Vec<String> = String::from_utf8_lossy(out)
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&limited.stdout), sorted(&unlimited.stdout));
    // Spill files are removed after the query.
    assert_eq!(std::fs::read_dir(&spills).unwrap().count(), 0);
    // A limit too small even to spill in fails the query, and says what to raise.
    let mut starved = query(sql, &input, &["--memory-limit", "4M"]);
    starved.stdout(Stdio::null());
    let out = starved.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("raise --memory-limit"));
}

#[test]
fn since_and_until_keep_the_records_of_their_range_wherever_they_are_stored() {
    let dir = common::tempdir();
    let file = dir.join("flows.log");
    // 20 000 lines from 2025-11-22T08:26:40Z, ten seconds' worth.
    std::fs::write(&file, generate(20_000, "v2", 12)).unwrap();
    let sql = "SELECT count(*) AS n FROM flows";
    let since = "2025-11-22T08:26:45Z";
    let expected = answer(
        &format!("{sql} WHERE start >= '{since}'"),
        &[file.to_str().unwrap()],
        &[],
        &[],
    );
    let got = answer(sql, &[file.to_str().unwrap()], &["--since", since], &[]);
    assert_eq!(got, expected);
    let n = got[0]["n"].as_i64().unwrap();
    assert!(n > 1000 && n < 19_000, "{n}");
}

#[test]
fn lines_that_are_not_records_are_left_out_counted_and_kept() {
    let dir = common::tempdir();
    let file = dir.join("flows.log");
    let mut text = generate(100, "v2", 5);
    text.push_str("2 123456789012 eni-1 10.0.0.1 10.0.0.999 1 2 6 1 1 1 2 ACCEPT OK\n");
    text.push_str(&generate(10, "v2", 6));
    std::fs::write(&file, &text).unwrap();
    let letters = dir.join("dead.ndjson");
    let mut command = query(
        "SELECT count(*) AS n FROM flows",
        &[file.to_str().unwrap()],
        &["--format", "csv"],
    );
    command.arg("--dead-letter").arg(&letters);
    let out = ok(command);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n110\n");
    // Scanned twice (a join), each line is still counted once.
    let mut joined = query(
        "SELECT count(*) AS n FROM flows a JOIN flows b ON a.srcaddr = b.srcaddr AND a.start = b.start AND a.srcport = b.srcport",
        &[file.to_str().unwrap()],
        &["--format", "csv"],
    );
    joined.stdout(Stdio::null());
    let said = String::from_utf8_lossy(&joined.output().unwrap().stderr).into_owned();
    assert!(said.contains("warning: 1 lines"), "{said}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 lines were not flow-log records")
            && stderr.contains("flows.log:101:")
            && stderr.contains("dstaddr"),
        "{stderr}"
    );
    let kept = common::ndjson(&std::fs::read(&letters).unwrap());
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["line"], 101);
    assert!(kept[0]["raw"].as_str().unwrap().contains("10.0.0.999"));
}

#[test]
fn statements_from_standard_input_and_every_output_format() {
    let dir = common::tempdir();
    let file = dir.join("flows.log");
    std::fs::write(&file, generate(1_000, "v5", 7)).unwrap();
    let input = file.to_str().unwrap();

    // Statements from a pipe, one answer after another: no SQL before the input.
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog"));
    command
        .args(["query", input, "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT count(*) AS n FROM flows;\nSELECT 'a;b' AS s;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n1000\ns\na;b\n");

    // CSV, NDJSON and a table on standard output.
    let sql = "SELECT action, count(*) AS n FROM flows GROUP BY action ORDER BY action";
    let csv = ok(query(sql, &[input], &["--format", "csv"]));
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.starts_with("action,n\nACCEPT,"), "{csv}");
    let table = ok(query(sql, &[input], &[]));
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("| action ") && table.contains("| REJECT "),
        "{table}"
    );

    // Parquet, as pyarrow reads it; the kind of file by --output's name.
    let parquet = dir.join("answer.parquet");
    let mut command = query("SELECT * FROM flows WHERE action = 'ACCEPT'", &[input], &[]);
    command.arg("--output").arg(&parquet);
    ok(command);
    let read = common::run_python([
        "-c",
        "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
         print(t.num_rows, t.schema.field('start').type, t.schema.field('dstport').type)",
        parquet.to_str().unwrap(),
    ]);
    let read = String::from_utf8(read).unwrap();
    let accepted: usize = csv
        .lines()
        .find_map(|l| l.strip_prefix("ACCEPT,"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        read.trim(),
        format!("{accepted} timestamp[ms, tz=UTC] int32"),
        "{read}"
    );

    // A table shows at most --max-rows rows and says how many there were.
    let out = ok(query("SELECT * FROM flows", &[input], &["--max-rows", "5"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1000 rows, the first 5 shown"), "{stderr}");
}

#[test]
fn mistakes_are_said_plainly_with_the_right_exit_status() {
    let dir = common::tempdir();
    let file = dir.join("flows.log");
    std::fs::write(&file, generate(10, "v2", 8)).unwrap();
    let input = file.to_str().unwrap();
    let run = |sql: &str, inputs: &[&str], extra: &[&str]| {
        let out = query(sql, inputs, extra).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run("SELECT dstprot FROM flows", &[input], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("dstprot") && stderr.contains("dstport"),
        "{stderr}"
    );
    let (code, stderr) = run("SELECT 1", &[&format!("{input}.missing")], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    let (code, stderr) = run("SELECT 1", &[input], &["--memory-limit", "lots"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = run("SELECT 1", &[input], &["--since", "yesterday"]);
    assert_eq!(code, Some(2), "{stderr}");
    // --account and --region choose folders of the key layout; a file has none.
    let (code, stderr) = run("SELECT 1", &[input], &["--region", "eu-west-1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("WHERE"), "{stderr}");
    // An answer never overwrites what is read.
    let (code, stderr) = run("SELECT * FROM flows", &[input], &["--output", input]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("overwrite"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 10);
    // A failed query leaves --output as it was.
    let answer = dir.join("answer.csv");
    std::fs::write(&answer, "before\n").unwrap();
    let (code, _) = run(
        "SELECT nope FROM flows",
        &[input],
        &["--output", answer.to_str().unwrap()],
    );
    assert_eq!(code, Some(1));
    assert_eq!(std::fs::read_to_string(&answer).unwrap(), "before\n");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no partial file left"
    );
    // Text that is not flow logs fails the query, named.
    let notes = dir.join("README.md");
    std::fs::write(&notes, "# Notes\n\nNothing here is a flow log.\n").unwrap();
    let (code, stderr) = run(
        "SELECT count(*) FROM flows",
        &[input, notes.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("README.md: not flow logs"), "{stderr}");
    std::fs::remove_file(&notes).unwrap();
    // A file that is not flow logs fails the query, named.
    let other = dir.join("notes.parquet");
    std::fs::write(&other, b"PAR1 but not really").unwrap();
    let (code, stderr) = run(
        "SELECT count(*) FROM flows",
        &[input, other.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("notes.parquet"), "{stderr}");
}

/// Drives a program on a terminal (a pseudo-terminal): waits for each prompt before typing
/// the next line, as a person would, and prints everything the terminal showed.
const TERMINAL: &str = r#"
import os, pty, select, sys, time
program, lines = sys.argv[1:3], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(program[0], program[0:1] + ["query", program[1]])
shown = b""
def read_until(marker, seconds=60):
    global shown
    deadline = time.time() + seconds
    while marker not in shown.split(b"\n")[-1] and time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                shown += os.read(fd, 65536)
            except OSError:
                break
for line in lines:
    read_until(b"> ")
    os.write(fd, line.encode() + b"\r")
    # What is typed is echoed; the next prompt comes after the answer.
    shown += b"\n"
_, status = os.waitpid(pid, 0)
try:
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        shown += chunk
except OSError:
    pass
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn the_prompt_answers_statements_over_lines_and_keeps_history() {
    let dir = common::tempdir();
    let file = dir.join("flows.log");
    std::fs::write(&file, generate(500, "v2", 10)).unwrap();
    let state = dir.join("state");
    let out = Command::new(common::python())
        .args([
            "-c",
            TERMINAL,
            env!("CARGO_BIN_EXE_flowlog"),
            file.to_str().unwrap(),
        ])
        .args([
            "SELECT count(*) AS n",
            "FROM flows;",
            "\\d flows",
            "SELECT nope FROM flows;",
            "\\q",
        ])
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    // The statement typed over two lines, answered as a table.
    assert!(shown.contains("| 500 |"), "{shown}");
    // \d lists the columns with their types.
    assert!(
        shown.contains("dstport") && shown.contains("Int32"),
        "{shown}"
    );
    // A mistake is said, and the prompt goes on.
    assert!(shown.contains("nope"), "{shown}");
    let history = std::fs::read_to_string(state.join("flowlog/query_history")).unwrap();
    assert!(
        history.contains("SELECT count(*) AS n") && history.contains("\\d flows"),
        "{history}"
    );
}
