//! `flowlog detect` end to end: each rule against a synthetic attack embedded in the bench
//! generator's background traffic (it fires once, with its evidence), the background alone
//! (no rule fires), every finding valid OCSF 1.1.0 Detection Finding, ECS alerts, and the
//! state carried across runs.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The generator's first record time (`t0`); it writes 2000 records a second.
const T0: i64 = 1_763_800_000;

/// Background traffic from `../shared/bench/gen_flowlogs.py` (v2, seed 7).
struct Background {
    lines: Vec<String>,
    path: PathBuf,
}

fn background(n: usize) -> &'static Background {
    static SMALL: OnceLock<Background> = OnceLock::new();
    static LARGE: OnceLock<Background> = OnceLock::new();
    let cell = match n {
        200_000 => &SMALL,
        1_000_000 => &LARGE,
        _ => panic!("no background of {n}"),
    };
    cell.get_or_init(|| {
        let generator = common::manifest_dir().join("../shared/bench/gen_flowlogs.py");
        let out = common::run_python([generator.into_os_string(), n.to_string().into()]);
        let dir = common::tempdir();
        let path = dir.join(format!("background-{n}.log"));
        std::fs::write(&path, &out).unwrap();
        std::mem::forget(dir);
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        Background { lines, path }
    })
}

fn fields(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

fn is_private(ip: &str) -> bool {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_private(),
        _ => false,
    }
}

/// The policies the background keeps, as an organisation would write them down: its
/// hosts' resolvers, and the sources allowed to reach administration ports. The generator
/// sends DNS to thousands of public addresses and opens SSH and RDP to the whole internet,
/// which the default policies rightly report (see `defaults_report_the_background_policy`).
fn policies(bg: &Background) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut resolvers, mut admins) = (BTreeSet::new(), BTreeSet::new());
    for line in &bg.lines {
        let f = fields(line);
        if f[13] != "OK" {
            continue;
        }
        let (src, dst, port) = (f[3], f[4], f[6]);
        if matches!(port, "53" | "5353") && is_private(src) && !is_private(dst) {
            resolvers.insert(dst.to_owned());
        }
        if matches!(port, "22" | "3389" | "5985" | "5986") && !is_private(src) && is_private(dst) {
            admins.insert(src.to_owned());
        }
    }
    (resolvers, admins)
}

/// The rules the tests run: published defaults, except ten-second windows for the
/// baselined rules (the 200k background spans 100 s) and the background's policies.
fn rules(bg: &Background) -> String {
    let (resolvers, admins) = policies(bg);
    let list = |set: &BTreeSet<String>| {
        set.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "allowed_lateness_secs = 30\n\
         [rejected_spike]\nwindow_secs = 10\n\
         [outbound_volume]\nwindow_secs = 10\n\
         [admin_ports]\ntrusted_sources = [{}]\n\
         [outbound_dns]\nallowed_resolvers = [{}]\n",
        list(&admins),
        list(&resolvers)
    )
}

/// A v2 record: `who` is "interface source destination"; then destination port,
/// protocol and bytes; start (seconds) and action.
fn record(
    who: &str,
    (dst_port, protocol, bytes): (u16, u8, u64),
    start: i64,
    action: &str,
) -> String {
    format!(
        "2 123456789012 {who} 40000 {dst_port} {protocol} 10 {bytes} {start} {} {action} OK",
        start + 30
    )
}

/// The background with `attack` merged in by start time, as it would have arrived.
fn embed(bg: &Background, mut attack: Vec<String>, dir: &Path) -> PathBuf {
    let start = |l: &str| fields(l)[10].parse::<i64>().unwrap();
    attack.sort_by_key(|l| start(l));
    let mut out = String::new();
    let mut attack = attack.into_iter().peekable();
    for line in &bg.lines {
        while attack.peek().is_some_and(|a| start(a) < start(line)) {
            out.push_str(&attack.next().unwrap());
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    for a in attack {
        out.push_str(&a);
        out.push('\n');
    }
    let path = dir.join("embedded.log");
    std::fs::write(&path, out).unwrap();
    path
}

/// Runs `flowlog detect` with `rules` on `input`; the findings.
fn detect(input: &Path, rules: &str, to: &str, extra: &[&str]) -> Vec<Value> {
    let dir = common::tempdir();
    let rules_path = dir.join("rules.toml");
    std::fs::write(&rules_path, rules).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["detect", "--to", to, "--rules"])
        .arg(&rules_path)
        .args(extra)
        .arg(input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks each finding against the OCSF schema and what the schema cannot say.
fn assert_valid_ocsf(findings: &[Value]) {
    let validator = common::ocsf_class_validator("detection_finding", "1.1.0");
    for f in findings {
        let errors = common::ocsf_errors(&validator, f);
        assert!(errors.is_empty(), "{errors:#?}\n{f:#}");
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(
            f["type_uid"].as_i64().unwrap(),
            200_400 + f["activity_id"].as_i64().unwrap()
        );
        assert_eq!(f["metadata"]["uid"], f["finding_info"]["uid"]);
        assert!(f["time"].as_i64().unwrap() >= f["start_time"].as_i64().unwrap());
    }
}

fn rule_of(f: &Value) -> &str {
    f["finding_info"]["analytic"]["uid"].as_str().unwrap()
}

/// Runs the attack in the small background; asserts exactly one finding, of `rule`.
fn fires_once(rule: &str, attack: Vec<String>, extra: &[&str]) -> Value {
    let bg = background(200_000);
    let dir = common::tempdir();
    let input = embed(bg, attack, &dir);
    let findings = detect(&input, &rules(bg), "ocsf", extra);
    assert_valid_ocsf(&findings);
    let rules: Vec<&str> = findings.iter().map(rule_of).collect();
    assert_eq!(rules, [rule], "{findings:#?}");
    findings.into_iter().next().unwrap()
}

/// A distinct count within 3% of `exact`.
fn assert_close(value: &Value, exact: u64) {
    let v = value.as_u64().unwrap();
    assert!(
        v.abs_diff(exact) * 100 <= exact * 3,
        "{v} is not about {exact}"
    );
}

fn evidence(f: &Value) -> &Value {
    &f["evidences"][0]
}

/// The internal address with the most rejected records, and its interface.
fn busiest_rejecter(bg: &Background) -> (String, String) {
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for line in &bg.lines {
        let f = fields(line);
        if f[13] == "OK" && f[12] == "REJECT" && is_private(f[3]) {
            *counts
                .entry((f[3].to_owned(), f[2].to_owned()))
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(k, n)| (*n, k.clone()))
        .unwrap()
        .0
}

#[test]
fn vertical_scan_fires_once() {
    // 600 ports of one host, 40 of them privileged, over two minutes; mostly refused.
    let attack = (0..600)
        .map(|i| {
            let port = if i < 40 { 1 + i * 20 } else { 1024 + i * 7 };
            let action = if i % 10 == 0 { "ACCEPT" } else { "REJECT" };
            record(
                "eni-0a77 10.0.7.77 10.0.3.9",
                (port as u16, 6, 44),
                T0 + 10 + i / 6,
                action,
            )
        })
        .collect();
    let f = fires_once("vertical_scan", attack, &[]);
    let e = evidence(&f);
    assert_eq!(e["src_endpoint"]["ip"], "10.0.7.77");
    assert_eq!(e["dst_endpoint"]["ip"], "10.0.3.9");
    // Exact while small, HyperLogLog++ past that (about 1.6% error).
    assert_close(&e["data"]["distinct_ports"], 600);
    assert_eq!(e["data"]["distinct_privileged_ports"], 40);
    assert_eq!(e["data"]["records"], 600);
    assert_eq!(f["finding_info"]["attacks"][0]["technique"]["uid"], "T1046");
    assert_eq!(f["severity_id"], 3);
    assert_eq!(
        f["finding_info"]["related_events"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

/// One port (445) on 300 hosts of another subnet, over half a minute.
fn sweep() -> Vec<String> {
    (0..300)
        .map(|i| {
            let dst = format!("10.0.{}.{}", 100 + i / 200, 1 + i % 200);
            record(
                &format!("eni-0a78 10.0.7.78 {dst}"),
                (445, 6, 44),
                T0 + 20 + i / 10,
                "REJECT",
            )
        })
        .collect()
}

#[test]
fn horizontal_scan_fires_once() {
    // One port on 300 hosts of another subnet.
    let attack = sweep();
    let f = fires_once("horizontal_scan", attack, &[]);
    let e = evidence(&f);
    assert_eq!(e["src_endpoint"]["ip"], "10.0.7.78");
    assert_eq!(e["data"]["dst_port"], 445);
    assert!(e.get("dst_endpoint").is_none());
    assert_close(&e["data"]["distinct_destinations"], 300);
    assert_eq!(f["finding_info"]["attacks"][0]["technique"]["uid"], "T1046");
}

#[test]
fn rejected_spike_fires_once() {
    let bg = background(200_000);
    let (ip, eni) = busiest_rejecter(bg);
    // 600 more rejected records in one ten-second window, after eight of history.
    let attack = (0..600)
        .map(|i| {
            record(
                &format!("{eni} {ip} 93.184.216.34"),
                (443, 6, 60),
                T0 + 82 + i % 6,
                "REJECT",
            )
        })
        .collect();
    let f = fires_once("rejected_spike", attack, &[]);
    let e = evidence(&f);
    assert_eq!(e["src_endpoint"]["ip"], ip.as_str());
    assert!(e["data"]["value"].as_f64().unwrap() >= 600.0);
    assert!(e["data"]["history_windows"].as_u64().unwrap() >= 5);
    assert_eq!(f["finding_info"]["analytic"]["type_id"], 3);
    assert_eq!(f["action_id"], 2);
}

#[test]
fn outbound_volume_fires_once() {
    let bg = background(200_000);
    // The interface that sends the most: 80 GB more in one window.
    let mut sent: HashMap<(String, String), u64> = HashMap::new();
    for line in &bg.lines {
        let f = fields(line);
        if f[13] == "OK" && is_private(f[3]) && !is_private(f[4]) {
            *sent.entry((f[2].to_owned(), f[3].to_owned())).or_default() +=
                f[9].parse::<u64>().unwrap();
        }
    }
    let ((eni, ip), _) = sent
        .into_iter()
        .max_by_key(|(k, n)| (*n, k.clone()))
        .unwrap();
    let attack = (0..8)
        .map(|i| {
            record(
                &format!("{eni} {ip} 45.77.1.9"),
                (443, 6, 10_000_000_000),
                T0 + 71 + i,
                "ACCEPT",
            )
        })
        .collect();
    let f = fires_once("outbound_volume", attack, &[]);
    assert_eq!(evidence(&f)["src_endpoint"]["interface_uid"], eni.as_str());
    assert!(evidence(&f)["data"]["value"].as_f64().unwrap() >= 8e10);
    assert_eq!(f["resources"][0]["uid"], eni.as_str());
    assert_eq!(f["finding_info"]["attacks"][0]["technique"]["uid"], "T1048");
}

#[test]
fn admin_port_from_the_internet_fires_once() {
    let attack = (0..5)
        .map(|i| {
            record(
                "eni-0b01 198.51.100.7 10.0.3.9",
                (22, 6, 4000),
                T0 + 40 + i,
                "ACCEPT",
            )
        })
        .collect();
    let f = fires_once("admin_ports", attack, &[]);
    let e = evidence(&f);
    assert_eq!(e["src_endpoint"]["ip"], "198.51.100.7");
    assert_eq!(e["dst_endpoint"]["port"], 22);
    assert_eq!(e["connection_info"]["direction_id"], 1);
    assert_eq!(e["data"]["records"], 5);
    assert_eq!(f["severity_id"], 4);
}

#[test]
fn dns_to_an_unapproved_resolver_fires_once() {
    let attack = (0..3)
        .map(|i| {
            record(
                "eni-0b02 10.0.6.13 198.51.100.53",
                (53, 17, 300),
                T0 + 50 + i,
                "ACCEPT",
            )
        })
        .collect();
    let f = fires_once("outbound_dns", attack, &[]);
    let e = evidence(&f);
    assert_eq!(e["dst_endpoint"]["ip"], "198.51.100.53");
    assert_eq!(e["connection_info"]["protocol_name"], "udp");
    assert_eq!(e["connection_info"]["direction_id"], 2);
}

#[test]
fn watchlist_traffic_fires_once() {
    let dir = common::tempdir();
    let list = dir.join("bad-hosts.txt");
    std::fs::write(&list, "# threat feed\n198.51.100.66\n").unwrap();
    let attack = vec![record(
        "eni-0b03 10.0.4.20 198.51.100.66",
        (443, 6, 9000),
        T0 + 60,
        "ACCEPT",
    )];
    let f = fires_once(
        "watchlist",
        attack,
        &["--watchlist", list.to_str().unwrap()],
    );
    let e = evidence(&f);
    assert_eq!(e["data"]["watched_ip"], "198.51.100.66");
    assert_eq!(e["data"]["watchlist"], "bad-hosts.txt");
    assert_eq!(e["src_endpoint"]["ip"], "10.0.4.20");
}

#[test]
fn no_rule_fires_on_a_million_background_records() {
    let bg = background(1_000_000);
    let findings = detect(&bg.path, &rules(bg), "ocsf", &[]);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn defaults_report_the_background_policy() {
    // With no policy given, the background's DNS to public resolvers and its SSH/RDP from
    // the internet are what the policy rules report, and nothing else fires.
    let bg = background(200_000);
    let findings = detect(&bg.path, "", "ocsf", &[]);
    assert_valid_ocsf(&findings);
    let rules: BTreeSet<&str> = findings.iter().map(rule_of).collect();
    assert_eq!(rules, BTreeSet::from(["admin_ports", "outbound_dns"]));
    let ids: BTreeSet<&str> = findings
        .iter()
        .map(|f| f["finding_info"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), findings.len(), "finding ids are unique");
    // A second run names the same findings the same way.
    let again = detect(&bg.path, "", "ocsf", &[]);
    assert_eq!(findings, again);
}

#[test]
fn ecs_alerts_carry_the_same_findings() {
    let bg = background(200_000);
    let dir = common::tempdir();
    let attack = sweep();
    let input = embed(bg, attack, &dir);
    let rules = rules(bg);
    let ocsf = detect(&input, &rules, "ocsf", &[]);
    let ecs = detect(&input, &rules, "ecs", &[]);
    assert_eq!(ecs.len(), 1);
    let a = &ecs[0];
    assert_eq!(a["event"]["kind"], "alert");
    assert_eq!(a["event"]["id"], ocsf[0]["finding_info"]["uid"]);
    assert_eq!(a["rule"]["id"], "horizontal_scan");
    assert_eq!(a["source"]["ip"], "10.0.7.78");
    assert_eq!(a["flowlog"]["evidence"]["dst_port"], 445);
    assert_eq!(a["threat"]["technique"]["id"][0], "T1046");
    assert_eq!(a["network"]["transport"], "tcp");
    assert_close(&a["flowlog"]["evidence"]["distinct_destinations"], 300);
    assert!(a["@timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn state_carries_open_windows_to_the_next_run() {
    // A scan split across two inputs read by two runs: the first saves its open window;
    // the second takes it up, and a record two hours on closes it: one finding, with
    // every port of both halves.
    let dir = common::tempdir();
    let mut lines: Vec<String> = (0..600)
        .map(|i| {
            record(
                "eni-0a77 10.0.7.77 10.0.3.9",
                (1 + i as u16, 6, 44),
                T0 + i / 6,
                "REJECT",
            )
        })
        .collect();
    lines.push(record(
        "eni-0a77 10.0.7.77 10.0.3.9",
        (443, 6, 44),
        T0 + 7200,
        "ACCEPT",
    ));
    let (first, second) = (dir.join("a.log"), dir.join("b.log"));
    std::fs::write(&first, lines[..300].join("\n") + "\n").unwrap();
    std::fs::write(&second, lines[300..].join("\n") + "\n").unwrap();
    let state = dir.join("state.json");
    let state_arg = ["--state", state.to_str().unwrap()];
    assert!(detect(&first, "", "ocsf", &state_arg).is_empty());
    assert!(state.is_file());
    let findings = detect(&second, "", "ocsf", &state_arg);
    assert_valid_ocsf(&findings);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_close(&evidence(&findings[0])["data"]["distinct_ports"], 600);
    assert_eq!(evidence(&findings[0])["data"]["records"], 600);
    // Read alone, the second half is no scan.
    let dir2 = common::tempdir();
    let alone = detect(
        &second,
        "",
        "ocsf",
        &["--state", dir2.join("s.json").to_str().unwrap()],
    );
    assert!(alone.is_empty(), "{alone:#?}");
    // Saved with other settings, the state is refused with a warning, not mixed in.
    let r = dir.join("r.toml");
    std::fs::write(&r, "[vertical_scan]\nmin_ports = 400\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["detect", "--state"])
        .arg(&state)
        .arg("--rules")
        .arg(&r)
        .arg(&first)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("other [detect] settings"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A state file that is not one stops the run before it reads anything.
    std::fs::write(&state, "{not json").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["detect", "--state"])
        .arg(&state)
        .arg(&first)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("move it away"));
}

/// Lines of `path`, parsed.
fn ndjson(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `flowlog run` configuration: a file source on `input`; records to `flows.ndjson`,
/// findings (OCSF) to `alerts.ndjson`.
fn run_config(dir: &Path, input: &Path, detect: &str, follow: bool) -> PathBuf {
    let sinks = format!(
        "[detect]\nfindings = [\"alerts\"]\n{detect}\n\
         [sinks.flows]\ntype = \"file\"\npath = \"{}\"\n\
         [sinks.alerts]\ntype = \"file\"\npath = \"{}\"\n",
        dir.join("flows.ndjson").display(),
        dir.join("alerts.ndjson").display()
    );
    common::runs::write_config(
        dir,
        &format!(
            "type = \"file\"\npaths = [\"{}\"]\nfollow = {follow}\npoll_secs = 0.05",
            input.display()
        ),
        &sinks,
    )
}

fn scan_lines(from: u16, to: u16) -> Vec<String> {
    (from..to)
        .map(|i| {
            record(
                "eni-0a77 10.0.7.77 10.0.3.9",
                (1 + i, 6, 44),
                T0 + i64::from(i) / 6,
                "REJECT",
            )
        })
        .collect()
}

#[test]
fn run_routes_findings_to_their_own_sink() {
    let dir = common::tempdir();
    let input = dir.join("flows.log");
    let mut lines = background(200_000).lines[..2000].to_vec();
    lines.extend(scan_lines(0, 600));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    // The background's own policy findings are another test's subject.
    let quiet = "[detect.admin_ports]\nenabled = false\n[detect.outbound_dns]\nenabled = false\n";
    let config = run_config(&dir, &input, quiet, false);
    let (ok, log) = common::runs::run_to_end(common::runs::flowlog(&["run", "--once"], &config));
    assert!(ok, "{log}");
    // Every record to the records' sink, none of them a finding...
    let flows = ndjson(&dir.join("flows.ndjson"));
    assert_eq!(
        flows.len(),
        lines.len(),
        "NODATA and SKIPDATA lines are records too"
    );
    assert!(flows.iter().all(|f| f.get("class_uid").is_none()));
    // ...and the finding alone to its sink, as an OCSF Detection Finding.
    let alerts = ndjson(&dir.join("alerts.ndjson"));
    assert_valid_ocsf(&alerts);
    assert_eq!(
        alerts.iter().map(rule_of).collect::<Vec<_>>(),
        ["vertical_scan"]
    );
    assert!(dir.join("data/detect.json").is_file());
}

#[test]
fn run_keeps_open_windows_across_a_restart() {
    let dir = common::tempdir();
    let input = dir.join("flows.log");
    std::fs::write(&input, scan_lines(0, 300).join("\n") + "\n").unwrap();
    let config = run_config(&dir, &input, "", true);
    let flows = dir.join("flows.ndjson");
    let alerts = dir.join("alerts.ndjson");
    let stop = |child: std::process::Child| {
        // SAFETY: kill sends a signal to the child we started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        common::runs::finish(child, &config)
    };
    let child = common::runs::flowlog(&["run"], &config).spawn().unwrap();
    common::runs::wait_for(|| ndjson(&flows).len(), 300, String::new);
    let (ok, log) = stop(child);
    assert!(ok, "{log}");
    assert!(ndjson(&alerts).is_empty(), "the hour has not passed");
    // The rest of the scan, and a record two hours on that closes its window.
    let mut rest = scan_lines(300, 600);
    rest.push(record(
        "eni-0a77 10.0.7.77 10.0.3.9",
        (443, 6, 44),
        T0 + 7200,
        "ACCEPT",
    ));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    std::io::Write::write_all(&mut file, (rest.join("\n") + "\n").as_bytes()).unwrap();
    let child = common::runs::flowlog(&["run"], &config).spawn().unwrap();
    common::runs::wait_for(
        || ndjson(&alerts).len(),
        1,
        || format!("{} records", ndjson(&flows).len()),
    );
    let (ok, log) = stop(child);
    assert!(ok, "{log}");
    assert_eq!(ndjson(&flows).len(), 601, "each record once");
    let alerts = ndjson(&alerts);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_valid_ocsf(&alerts);
    // Both runs' halves in one finding.
    assert_eq!(evidence(&alerts[0])["data"]["records"], 600);
    assert_close(&evidence(&alerts[0])["data"]["distinct_ports"], 600);
}

#[test]
fn a_findings_route_must_lead_somewhere_findings_can_go() {
    let dir = common::tempdir();
    let input = dir.join("flows.log");
    std::fs::write(&input, "").unwrap();
    for (detect, sinks, says) in [
        (
            "[detect]\n",
            "[sinks.flows]\ntype = \"file\"\npath = \"/tmp/x\"\n",
            "findings names no sink",
        ),
        (
            "[detect]\nfindings = [\"alert\"]\n",
            "[sinks.flows]\ntype = \"file\"\npath = \"/tmp/x\"\n",
            "`alert`, which is not a sink",
        ),
        (
            "[detect]\nfindings = [\"otel\"]\n",
            "[sinks.otel]\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:4318\"\n[sinks.flows]\ntype = \"file\"\npath = \"/tmp/x\"\n",
            "does not carry findings",
        ),
        (
            "[detect]\nfindings = [\"hec\"]\n",
            "[sinks.hec]\ntype = \"splunk_hec\"\nendpoint = \"https://127.0.0.1:8088\"\ntoken = \"t\"\nformat = \"ecs\"\n[sinks.flows]\ntype = \"file\"\npath = \"/tmp/x\"\n",
            "sourcetype of their own",
        ),
        (
            "[detect]\nfindings = [\"es\"]\n",
            "[sinks.es]\ntype = \"elasticsearch\"\nendpoints = [\"https://127.0.0.1:9200\"]\n[sinks.flows]\ntype = \"file\"\npath = \"/tmp/x\"\n",
            "findings_format = \\\"ecs\\\"",
        ),
        (
            "[detect]\nfindings = [\"flows\"]\n",
            "[sinks.flows]\ntype = \"file\"\npath = \"/tmp/x\"\n",
            "the records would go nowhere",
        ),
        (
            "[transform.reduce]\naggregate = true\n",
            "[sinks.hec]\ntype = \"splunk_hec\"\nendpoint = \"https://127.0.0.1:8088\"\ntoken = \"t\"\n",
            "forwards the original lines",
        ),
        (
            "[detect]\nfindings = [\"alerts\"]\n[detect.vertical_scan]\nwindow_secs = 0\n",
            "[sinks.flows]\ntype = \"file\"\npath = \"/tmp/x\"\n[sinks.alerts]\ntype = \"file\"\npath = \"/tmp/y\"\n",
            "window_secs must be between 1 and 604800",
        ),
    ] {
        let config = common::runs::write_config(
            &dir,
            &format!("type = \"file\"\npaths = [\"{}\"]", input.display()),
            &format!("{detect}{sinks}"),
        );
        let (ok, printed) = common::runs::run_to_end(common::runs::flowlog(&["validate"], &config));
        assert!(!ok, "{detect}{sinks}");
        assert!(
            printed.contains(says.trim_matches('\\'))
                || printed.contains(&says.replace("\\\"", "\"")),
            "{printed}"
        );
    }
}

#[test]
fn run_sends_again_the_findings_the_last_run_had_not_seen_delivered() {
    let dir = common::tempdir();
    let input = dir.join("flows.log");
    std::fs::write(&input, scan_lines(0, 600).join("\n") + "\n").unwrap();
    let config = run_config(&dir, &input, "", false);
    let (ok, log) = common::runs::run_to_end(common::runs::flowlog(&["run", "--once"], &config));
    assert!(ok, "{log}");
    let alerts = dir.join("alerts.ndjson");
    let first = ndjson(&alerts);
    assert_eq!(first.len(), 1);
    // As a crash right after sending would have left it: the finding still pending.
    let state = dir.join("data/detect.json");
    let mut saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        saved["pending"],
        serde_json::json!([]),
        "delivered, so not pending"
    );
    saved["pending"] = serde_json::json!([{
        "uid": first[0]["finding_info"]["uid"],
        "time": first[0]["time"],
        "document": first[0].to_string(),
    }]);
    std::fs::write(&state, saved.to_string()).unwrap();
    std::fs::remove_file(&alerts).unwrap();
    let (ok, log) = common::runs::run_to_end(common::runs::flowlog(&["run", "--once"], &config));
    assert!(ok, "{log}");
    assert_eq!(ndjson(&alerts), first, "sent again, the same document");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["pending"], serde_json::json!([]));
}
