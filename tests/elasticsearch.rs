//! `flowlog run` into the Elasticsearch test receiver: 1M lines through item and
//! request faults with a `kill -9` and a restart midway; every record is stored exactly
//! once (ids make this exact), poison documents are dead-lettered with the reason.

mod common;

use std::path::Path;
use std::process::Command;

use common::runs::{self, dead_letters, finish, run_setup, run_to_end, wait_for, RunSetup};
use common::{expected_ids, large_lines};
use flowlog_test_receivers::elasticsearch::{EsOptions, EsReceiver, Flavor};
use flowlog_test_receivers::sigv4::SigV4Key;

const STREAM: &str = "logs-aws.vpcflow-default";

/// The ES sink's section, with `extra` settings.
fn es_sink(receiver: &EsReceiver, extra: &str) -> String {
    format!(
        r#"[sinks.elastic]
type = "elasticsearch"
endpoints = ["{url}"]
auth = {{ api_key = "${{FLOWLOG_TEST_ES_KEY}}" }}
batch_timeout_secs = 0.05
request_timeout_secs = 5
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.2
{extra}"#,
        url = receiver.url(),
    )
}

fn setup(receiver: &EsReceiver, lines: usize, sink_extra: &str) -> RunSetup {
    run_setup(lines, &es_sink(receiver, sink_extra))
}

fn flowlog(args: &[&str], config: &Path) -> Command {
    let mut command = runs::flowlog(args, config);
    command.env("FLOWLOG_TEST_ES_KEY", "test-id:test-key");
    command
}

#[test]
fn a_million_lines_through_faults_and_a_kill_are_stored_exactly_once() {
    let receiver = EsReceiver::start(EsOptions {
        item_reject_rate: 0.2,
        failure_rate: 0.05,
        // Every 200th record goes to this address: the cluster refuses those for good.
        poison: Some("\"198.51.100.77\"".into()),
        keep_documents: false,
        seed: 7,
        ..EsOptions::default()
    });
    let n = large_lines();
    let setup = setup(&receiver, n, "max_bytes = 500000");
    let mut child = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for(
        || receiver.count(STREAM),
        n / 3,
        || format!("{:?}", receiver.stats()),
    );
    child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
    child.wait().unwrap();
    let at_kill = receiver.count(STREAM);
    assert!(at_kill < n, "killed too late to test anything");

    let (ok, stderr) = finish(
        flowlog(&["run"], &setup.config).spawn().unwrap(),
        &setup.config,
    );
    assert!(ok, "{stderr}");

    let stored = receiver.ids(STREAM);
    let letters = dead_letters(&setup.dir);
    let refused: std::collections::HashSet<u64> = letters
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("400 document_parsing_exception"),
            "{reason}"
        );
        assert!(letter["raw"].as_str().unwrap().contains("198.51.100.77"));
    }
    assert!(!refused.is_empty(), "the poison address is in the corpus");
    for (line, id) in (1..).zip(expected_ids(&setup.input, 1..=n as u64)) {
        assert_eq!(
            stored.contains(&id),
            !refused.contains(&line),
            "line {line}: stored {} , dead-lettered {}",
            stored.contains(&id),
            refused.contains(&line)
        );
    }
    assert_eq!(stored.len() + refused.len(), n);
    // Exactly once: nothing was ever written over (a second `create` is refused).
    assert_eq!(receiver.max_writes(), 1);
    let stats = receiver.stats();
    assert!(
        stats.conflicts > 0,
        "the restart sent records again: {stats:?}"
    );
    assert!(stats.rejected_items > n as u64 / 10, "{stats:?}");
    eprintln!(
        "{n} lines: killed with {at_kill} stored; {} bulk requests, {} failed whole, {} dropped, {} items rejected (429), {} conflicts (409, counted delivered), {} dead-lettered",
        stats.bulk_requests, stats.failed_requests, stats.dropped_connections, stats.rejected_items, stats.conflicts, refused.len()
    );
}

/// Runs `flowlog check`: whether it passed, and what it printed (stdout, then stderr).
fn check(config: &Path) -> (bool, String) {
    run_to_end(flowlog(&["check"], config))
}

#[test]
fn check_says_what_it_found_and_fails_on_a_read_only_user() {
    let receiver = EsReceiver::start(EsOptions::default());
    let setup = setup(&receiver, 10, "");
    let (ok, printed) = check(&setup.config);
    assert!(ok, "{printed}");
    assert!(printed.contains("Elasticsearch 8.15.0"), "{printed}");
    assert!(printed.contains("may create documents"), "{printed}");

    sign_in_as(&setup.config, "viewer", "viewer-password");
    let (ok, printed) = check(&setup.config);
    assert!(!ok, "{printed}");
    assert!(printed.contains("may not create documents"), "{printed}");
    assert!(!printed.contains("viewer-password"), "{printed}");
}

/// A role that may create documents and holds no cluster privilege (no `monitor`), the
/// least a writer needs: check says what it could not look at and passes, as `run`
/// delivers.
#[test]
fn a_least_privilege_writer_passes_check_and_delivers() {
    let receiver = EsReceiver::start(EsOptions::default());
    let setup = setup(&receiver, 10, "");
    sign_in_as(&setup.config, "writer", "writer-password");
    let (ok, printed) = check(&setup.config);
    assert!(ok, "{printed}");
    for said in [
        "product and version not checked: the credentials may not read them",
        "may create documents in `logs-aws.vpcflow-default`",
        "index template `flowlog-logs-aws.vpcflow-default`: not checked (403)",
    ] {
        assert!(printed.contains(said), "{said}: {printed}");
    }
    let (ok, stderr) = finish(
        flowlog(&["run"], &setup.config).spawn().unwrap(),
        &setup.config,
    );
    assert!(ok, "{stderr}");
    assert_eq!(receiver.count(STREAM), 10);
    // Installing templates asks GET / which product it is: that needs `monitor` (or a
    // `flavor`), which check says, as run would fail.
    let with_templates = std::fs::read_to_string(&setup.config).unwrap().replace(
        "[sinks.elastic]\n",
        "[sinks.elastic]\ninstall_template = true\n",
    );
    std::fs::write(&setup.config, &with_templates).unwrap();
    let (ok, printed) = check(&setup.config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("grant the `monitor` cluster privilege, or set `flavor`"),
        "{printed}"
    );
    // Refused credentials still fail: a privilege missing is not a password wrong.
    std::fs::write(
        &setup.config,
        with_templates.replace("writer-password", "wrong"),
    )
    .unwrap();
    let (ok, printed) = check(&setup.config);
    assert!(!ok, "{printed}");
    assert!(printed.contains("401"), "{printed}");
}

/// On OpenSearch no API says whether a user may write, so a refused `GET /` stays a
/// failure: a user mapped to no role must not pass.
#[test]
fn an_opensearch_user_refused_get_fails_check() {
    let receiver = EsReceiver::start(EsOptions {
        flavor: Flavor::OpenSearch,
        ..EsOptions::default()
    });
    let setup = setup(&receiver, 10, "");
    sign_in_as(&setup.config, "writer", "writer-password");
    let (ok, printed) = check(&setup.config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("no permissions for [cluster:monitor/main]"),
        "{printed}"
    );
}

/// Makes the configuration authenticate as one of the receiver's users.
fn sign_in_as(config: &Path, user: &str, password: &str) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        "auth = { api_key = \"${FLOWLOG_TEST_ES_KEY}\" }",
        &format!("auth = {{ user = \"{user}\", password = \"{password}\" }}"),
    );
    std::fs::write(config, text).unwrap();
}

/// Runs `scripts/<name>` with the test venv's Python; its standard output, once it
/// succeeded.
fn python_script(name: &str, args: &[String]) -> String {
    let output = Command::new(common::python())
        .arg(common::manifest_dir().join("scripts").join(name))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The receiver as Elastic's own Python client sees it (`scripts/es_client_check.py`;
/// `scripts/test.sh` installs the client in its venv).
#[test]
fn elastics_python_client_talks_to_the_receiver() {
    let receiver = EsReceiver::start(EsOptions::default());
    let stdout = python_script("es_client_check.py", &[receiver.url()]);
    assert!(stdout.contains("wrong key: 401"), "{stdout}");
    assert_eq!(receiver.ids("client-check").len(), 1);
    assert_eq!(receiver.ids(STREAM_OF_CLIENT).len(), 1);
}

const STREAM_OF_CLIENT: &str = "logs-aws.vpcflow-client";

/// The receiver as an Amazon OpenSearch Service domain (`es` in `region`) that takes
/// requests signed by the key, with a session token (temporary credentials).
fn amazon_opensearch(access_key_id: &str, secret: &str, region: &str) -> (SigV4Key, EsReceiver) {
    let key = SigV4Key {
        access_key_id: access_key_id.into(),
        secret_access_key: secret.into(),
        session_token: Some(format!("token-of-{access_key_id}")),
        region: region.into(),
        service: "es".into(),
    };
    let receiver = EsReceiver::start(EsOptions {
        flavor: Flavor::OpenSearch,
        sigv4: Some(key.clone()),
        ..EsOptions::default()
    });
    (key, receiver)
}

/// The receiver's SigV4 verifier as botocore's signer sees it (`scripts/sigv4_check.py`).
#[test]
fn botocore_signatures_are_accepted_and_altered_ones_refused() {
    let (key, receiver) = amazon_opensearch("ASIABOTOCORE", "botocore/secret", "us-west-2");
    let stdout = python_script(
        "sigv4_check.py",
        &[
            receiver.url(),
            key.access_key_id,
            key.secret_access_key,
            key.session_token.unwrap(),
            key.region,
        ],
    );
    assert!(
        stdout.contains("path changed after signing: 403"),
        "{stdout}"
    );
    assert_eq!(receiver.ids("logs-aws.vpcflow-botocore").len(), 1);
    assert_eq!(receiver.stats().auth_failures, 3);
}

/// Amazon OpenSearch Service: every request signed (SigV4) with credentials from the
/// AWS default chain, here a profile's `credential_process` handing out temporary
/// credentials, as SSO and role tooling do.
#[test]
fn amazon_opensearch_service_takes_signed_requests_from_the_default_chain() {
    let (key, receiver) =
        amazon_opensearch("ASIAFLOWLOGTEST1", "secret/with+\"quotes\"", "eu-west-1");
    let n = 5_000;
    let setup = setup(&receiver, n, "");
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "auth = { api_key = \"${FLOWLOG_TEST_ES_KEY}\" }",
        "auth = { aws_sigv4 = { region = \"eu-west-1\" } }\ninstall_template = true",
    );
    std::fs::write(&setup.config, text).unwrap();
    let process = |secret: &str| {
        let json = serde_json::json!({
            "Version": 1,
            "AccessKeyId": key.access_key_id,
            "SecretAccessKey": secret,
            "SessionToken": key.session_token,
            "Expiration": "2099-01-01T00:00:00Z",
        });
        let path = setup.dir.join(format!("creds-{}.json", secret.len()));
        std::fs::write(&path, json.to_string()).unwrap();
        format!("credential_process = cat {}\n", path.display())
    };
    let aws_config = setup.dir.join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[profile flowlog-test]\n{}\n[profile wrong-secret]\n{}",
            process(&key.secret_access_key),
            process("not-the-secret")
        ),
    )
    .unwrap();
    let aws = |mut command: Command, profile: &str| {
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
        ] {
            command.env_remove(name);
        }
        command
            .env("AWS_CONFIG_FILE", &aws_config)
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                setup.dir.join("no-such-file"),
            )
            .env("AWS_PROFILE", profile)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command
    };

    let (ok, printed) = run_to_end(aws(flowlog(&["check"], &setup.config), "flowlog-test"));
    assert!(ok, "{printed}");
    assert!(printed.contains("OpenSearch"), "{printed}");
    assert!(
        printed.contains("signed with SigV4 for `es` in eu-west-1 by temporary key ****EST1"),
        "{printed}"
    );

    let (ok, stderr) = finish(
        aws(flowlog(&["run"], &setup.config), "flowlog-test")
            .spawn()
            .unwrap(),
        &setup.config,
    );
    assert!(ok, "{stderr}");
    let stored = receiver.ids(STREAM);
    assert_eq!(stored.len(), n);
    assert_eq!(
        stored,
        expected_ids(&setup.input, 1..=n as u64)
            .into_iter()
            .collect()
    );
    let stats = receiver.stats();
    assert!(
        stats.gzip_requests > 0 && stats.auth_failures == 0,
        "{stats:?}"
    );
    assert!(receiver
        .index_template("flowlog-logs-aws.vpcflow-default")
        .is_some());

    // A key the domain does not know: AWS's 403, which check reports and `run` stops on.
    let (ok, printed) = run_to_end(aws(flowlog(&["check"], &setup.config), "wrong-secret"));
    assert!(!ok, "{printed}");
    assert!(printed.contains("403"), "{printed}");
    assert!(
        printed.contains("signature we calculated does not match"),
        "{printed}"
    );
    assert!(!printed.contains("not-the-secret"), "{printed}");
}
