//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `flowlog --version`: the version and commit; the long form adds the cargo features.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FLOWLOG_COMMIT"), ")");
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FLOWLOG_COMMIT"),
    ")\nfeatures: ",
    env!("FLOWLOG_FEATURES")
);

#[derive(Debug, Parser)]
#[command(
    name = "flowlog",
    version = VERSION,
    long_version = LONG_VERSION,
    about = "Decode, normalize and deliver AWS VPC and Transit Gateway flow logs",
    after_help = "Logs go to standard error. RUST_LOG filters them as tracing's EnvFilter \
                  reads it (e.g. RUST_LOG=flowlog_source_sqs=debug,info); --log-level \
                  sets one level for everything instead."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace); overrides RUST_LOG. Default: RUST_LOG,
    /// else info.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = ["error", "warn", "info", "debug", "trace", "off"])]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read flow logs from files or standard input and write one JSON object per record.
    ///
    /// The envelope is detected from the bytes: gzip, Parquet, CloudWatch Logs subscription
    /// JSON, Firehose HTTP endpoint requests, Lambda `awslogs` events, `{"message": ...}`
    /// lines or plain text. Header lines set the format from where they stand.
    Transform(Box<TransformArgs>),
    /// Run the detection rules over flow logs in files or standard input and print the
    /// findings, one JSON document per line (OCSF Detection Finding, or ECS alerts): the
    /// same rules `[detect]` runs in `flowlog run`.
    #[command(after_help = DETECT_HELP)]
    Detect(Box<DetectArgs>),
    /// Forward flow logs from the configured sources to the configured sinks, until every
    /// source has ended or SIGTERM/SIGINT (then drain in-flight batches and exit).
    Run(RunArgs),
    /// Read flow logs already in S3 (or a copy on disk) for a time range, and deliver them
    /// to the configured sinks: planned from AWS's key layout, several objects at a time,
    /// resumable, or sent to an SQS queue for a fleet of `flowlog run` sidecars.
    #[cfg(feature = "source-s3")]
    #[command(after_help = BACKFILL_HELP)]
    Backfill(Box<BackfillArgs>),
    /// Ask SQL questions of flow logs where they lie (files, directory trees, S3
    /// prefixes) with DataFusion: the table `flows` holds every record, decoded by
    /// flowlog. Without SQL, an interactive prompt on a terminal.
    #[cfg(feature = "sql")]
    #[command(after_help = QUERY_HELP)]
    Query(Box<QueryArgs>),
    /// Validate a configuration offline: syntax, types, interpolation, formats, and the
    /// files, certificates and databases it names. Reaches nothing on the network and binds
    /// no port, so it can run in CI or before a reload.
    Validate(ValidateArgs),
    /// Validate a configuration, reach each source and sink, and report what was found.
    /// Changes nothing.
    Check(CheckArgs),
    /// Print the flow-log field catalogue (every VPC and Transit Gateway field).
    Fields(FieldsArgs),
    /// Print what `--to ecs` writes: its field list, or an Elasticsearch component template.
    Schema(SchemaArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `flowlog man > /usr/local/share/man/man1/flowlog.1`.
    Man,
}

#[cfg(feature = "source-s3")]
const BACKFILL_HELP: &str = "\
Examples:
  flowlog backfill s3://my-flow-logs/AWSLogs/123456789012/ --since 2026-08-01 \\
      --until 2026-09-01 --region us-east-1 --config flowlog.toml --dry-run
  flowlog backfill ./archive/ --since 2026-08-04 --until 2026-08-05 --config flowlog.toml
  flowlog backfill s3://my-flow-logs/AWSLogs/123456789012/ --since ... --until ... \\
      --config flowlog.toml --resume
  flowlog backfill s3://my-flow-logs/AWSLogs/123456789012/ --since ... --until ... \\
      --config flowlog.toml \\
      --enqueue https://sqs.us-east-1.amazonaws.com/123456789012/flowlog-backfill
  flowlog backfill --status https://sqs.us-east-1.amazonaws.com/123456789012/flowlog-backfill

Records are kept by their own `start` (since <= start < until). The plan lists only the
partitions the range needs, with a margin, and is kept in <data_dir>/backfill/<id>/ with
each object's checkpoint: --resume reads only what was not delivered. Exit status: 0 when
every planned object was delivered, 1 when anything was dead-lettered, failed or left,
2 when the arguments or the configuration cannot be used.";

#[cfg(feature = "sql")]
const QUERY_HELP: &str = "\
Examples:
  flowlog query \"SELECT srcaddr, dstaddr, sum(bytes) AS bytes FROM flows
                 WHERE action = 'REJECT' GROUP BY 1, 2 ORDER BY bytes DESC LIMIT 20\" ./archive/
  flowlog query \"SELECT count(*) FROM flows WHERE dstport = 22\" \\
      s3://my-flow-logs/AWSLogs/123456789012/ --since 2026-08-01 --until 2026-08-08
  flowlog query \"SELECT * FROM flows WHERE srcaddr = '203.0.113.9'\" ./archive/ \\
      --format parquet --output matches.parquet
  flowlog query ./archive/        # an interactive prompt: \\d flows, \\q

`flows` has the columns of `flowlog fields` (log_status, dstport, start as a timestamp)
and, with --geoip, --asn or --eni-inventory, enrichment's. Conditions on `start` and
`region`, and --since, --until, --account, --region, narrow which folders of AWS's key
layout are listed. Lines that are not records are left out and counted (--dead-letter
keeps them). --aws-region is also the region of an S3 bucket.
Exit status: 0 answered, 1 the query failed, 2 unusable arguments.";

#[cfg(feature = "sql")]
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL statement (`flows` is the table), then the inputs: files, directories
    /// (read whole, or planned by AWS's key layout), globs, or `s3://bucket/prefix/`.
    /// When the first is an input, there is no SQL: statements come from a prompt on a
    /// terminal, or from standard input, separated by `;`.
    #[arg(value_name = "[SQL] INPUT", required = true, num_args = 1..)]
    pub words: Vec<String>,

    /// Only records whose start is this moment or later (RFC 3339 or a date); in a tree
    /// with AWS's key layout, only the folders that can hold them (with --margin) are
    /// listed.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only records whose start is before this moment (same forms).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only the folders of this account in AWS's key layout (the flow log's owner;
    /// repeatable). Refused for files: use WHERE account_id = '...'.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,

    /// Only the folders of this region in AWS's key layout (repeatable). Refused for
    /// files: use WHERE region = '...'.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,

    /// How rows are written: table (aligned, for a person), csv, ndjson, parquet.
    /// Default: by --output's extension, else table.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Write the answer to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The most rows a table shows (the rest are counted).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_rows: usize,

    /// The most memory the query's aggregations, sorts and joins hold before they spill
    /// to disk (bytes, or with K, M, G). Default: half the memory, at most 4G.
    #[arg(long, value_name = "SIZE", value_parser = byte_size)]
    pub memory_limit: Option<u64>,

    /// Where spill files go (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub temp_directory: Option<PathBuf>,

    /// How many objects are decoded at once (default: one per core).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,

    /// The format of lines in objects without a header line (as `format` in a source).
    #[arg(long = "input-format", value_name = "FMT")]
    pub input_format: Option<String>,

    /// Write every line that is not a record here (NDJSON dead letters).
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    /// After the answer, what was read: objects, bytes, records, time, spilled bytes.
    #[arg(long)]
    pub stats: bool,

    /// No warnings about lines that are not records (they are still left out).
    #[arg(long, short)]
    pub quiet: bool,

    /// A profile of the shared AWS config files; otherwise AWS_PROFILE or the default.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Another endpoint for S3 (a VPC endpoint, an S3-compatible store);
    /// AWS_ENDPOINT_URL works too.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Address buckets as <endpoint>/<bucket> (S3-compatible stores).
    #[arg(long)]
    pub s3_force_path_style: bool,

    /// How far beyond the time range S3 partitions are looked at (delivery lags behind
    /// the flows): seconds, or 90m, 2h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration_secs)]
    pub margin: u64,

    #[command(flatten)]
    pub enrich: EnrichArgs,
}

#[cfg(feature = "sql")]
impl QueryArgs {
    /// The SQL (the first word, unless it is an input) and the inputs.
    pub fn sql_and_inputs(&self) -> (Option<&str>, &[String]) {
        match self.words.split_first() {
            Some((first, rest)) if !is_input(first) => (Some(first), rest),
            _ => (None, &self.words),
        }
    }
}

/// Whether `word` names an input: an S3 URL, a path that exists, a glob that matches, or
/// one word that looks like a path (so that a misspelt path is said to be missing, not
/// taken for SQL).
#[cfg(feature = "sql")]
fn is_input(word: &str) -> bool {
    let path_like = !word.contains(char::is_whitespace) && word.contains(['/', '.']);
    word.starts_with("s3://")
        || path_like
        || std::path::Path::new(word).exists()
        || (word.contains(['*', '?', '['])
            && glob::glob(word).is_ok_and(|mut paths| paths.next().is_some()))
}

/// `512M`, `2G`, `1048576`: a number of bytes.
#[cfg(feature = "sql")]
fn byte_size(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let digits = upper.trim_end_matches(['B', 'I']);
    let (number, scale) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 1u64 << 10),
        Some('M') => (&digits[..digits.len() - 1], 1 << 20),
        Some('G') => (&digits[..digits.len() - 1], 1 << 30),
        Some('T') => (&digits[..digits.len() - 1], 1 << 40),
        _ => (digits, 1),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n >= 1 << 20)
        .ok_or_else(|| format!("{text:?} is not a size of at least 1M (512M, 2G)"))
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// `s3://bucket/prefix/`, or a local directory holding a copy of such a tree (what
    /// `aws s3 sync` leaves).
    #[arg(value_name = "URL", required_unless_present = "status")]
    pub url: Option<String>,

    /// The first moment wanted: RFC 3339 or a date (its midnight UTC).
    #[arg(long, value_name = "TIME", required_unless_present = "status")]
    pub since: Option<String>,

    /// The moment after the last one wanted (same forms): `--until 2026-09-01` ends with
    /// August.
    #[arg(long, value_name = "TIME", required_unless_present = "status")]
    pub until: Option<String>,

    /// Only this account (repeatable).
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,

    /// Only this region of the flow logs (repeatable).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,

    /// Only this flow log, by id `fl-...` (repeatable).
    #[arg(long = "flow-log", value_name = "ID")]
    pub flow_logs: Vec<String>,

    /// The configuration whose sinks, transform and data_dir are used (its sources are
    /// not). Not needed for --dry-run.
    #[arg(long, short, value_name = "FILE", required_unless_present_any = ["dry_run", "status"])]
    pub config: Option<PathBuf>,

    /// Only records for which this SQL expression is true, over the record's columns
    /// (the names of `--to raw`: log_status, dstport) and enrichment's: "dstport = 22 AND
    /// action = 'REJECT'". Bounds on
    /// `start` also narrow what is listed. Combined with the configuration's own `where`.
    #[arg(long = "where", value_name = "SQL")]
    pub predicate: Option<String>,

    /// Deliver to this sink of the configuration only (repeatable; default: all).
    #[arg(long = "sink", value_name = "NAME")]
    pub sinks: Vec<String>,

    /// Print the plan (prefixes, objects, bytes, estimated time) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: every object planned, `key size` per line, on standard output.
    #[arg(long, requires = "dry_run")]
    pub list: bool,

    /// Continue the backfill begun with the same arguments: the objects not yet delivered.
    #[arg(long)]
    pub resume: bool,

    /// Objects read at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub parallel: usize,

    /// How far beyond the range partitions and object names are looked at (seconds, or
    /// with a unit: 90m, 2h): delivery lags behind the flows.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration_secs)]
    pub margin: u64,

    /// The format of lines in objects without a header line (as `format` in a source).
    #[arg(long, value_name = "FMT")]
    pub format: Option<String>,

    /// Also write the final summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Send the planned objects to this SQS queue as S3 event notifications instead of
    /// reading them: `flowlog run` sidecars with an `sqs` source on the queue do the work.
    #[arg(long, value_name = "QUEUE_URL", conflicts_with_all = ["dry_run", "sinks"])]
    pub enqueue: Option<String>,

    /// Show how many messages the queue holds, is reading, and has given up on; nothing
    /// else is done.
    #[arg(long, value_name = "QUEUE_URL", conflicts_with_all = ["dry_run", "enqueue", "resume"])]
    pub status: Option<String>,

    /// No progress line and no summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,

    /// AWS region of the bucket (and queue); otherwise the AWS environment's.
    #[arg(long, value_name = "REGION")]
    pub aws_region: Option<String>,

    /// A profile of the shared AWS config files; otherwise AWS_PROFILE or the default.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Another endpoint for S3 and SQS (a VPC endpoint, an S3-compatible store);
    /// AWS_ENDPOINT_URL works too.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Address buckets as <endpoint>/<bucket> (S3-compatible stores).
    #[arg(long)]
    pub s3_force_path_style: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct TransformArgs {
    /// Inputs to read, in order; `-` is standard input (the default).
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,

    /// Format of records not preceded by a header line, as `${version} ${srcaddr} ...` or
    /// plain names (`version account-id` or `version account_id`). Default: the AWS
    /// default (version 2) format.
    #[arg(long, value_name = "FMT")]
    pub format: Option<String>,

    /// Shape of the output documents.
    #[arg(long, value_enum, default_value_t = OutputShape::Raw)]
    pub to: OutputShape,

    /// Append the records to this file instead of writing them to standard output.
    /// (A Parquet file is replaced, once it is complete.)
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// NDJSON (one document per line), or Parquet with `--to ocsf` (the OCSF schema as
    /// nested columns, zstd: what the `security_lake` sink writes).
    #[arg(long, value_enum, default_value_t = OutputFormat::Ndjson)]
    pub output_format: OutputFormat,

    /// Confirm input lines as rsyslog's omprog expects (`confirmMessages="on"`): `OK` on
    /// standard output once started, then once for every line of standard input whose
    /// records are written to `--output` (or dead-lettered). A line not confirmed when
    /// flowlog stops is sent again by the engine, so a restart loses nothing.
    #[arg(long, requires = "output")]
    pub confirm: bool,

    /// OCSF schema version for `--to ocsf`: 1.1.0 (Security Lake source version 2),
    /// 1.0.0-rc.2 (source version 1) or 1.8.0.
    #[arg(long, value_name = "VERSION", default_value = "1.1.0")]
    pub ocsf_version: flowlog_normalize::OcsfVersion,

    /// Write envelope metadata the output format has no field for (a CloudWatch Logs
    /// event id, a Firehose request id, what a log engine added to a `{"message"}` event)
    /// as one object under this key. What the format maps is always written.
    #[arg(long, value_name = "KEY")]
    pub envelope_key: Option<String>,

    /// Append records that cannot be decoded to this file, as NDJSON (source, line,
    /// reason, raw). Without it they are reported on standard error.
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,

    /// No summary, no progress bar, no warnings on standard error. Records that cannot be
    /// decoded still go there, unless --dead-letter names a file.
    #[arg(long, short)]
    pub quiet: bool,

    /// When standard input is a pipe, a terminal or a socket, the longest a record waits
    /// to be written while input keeps arriving (seconds); a record is written at once when
    /// the input goes quiet. Files are read in whole blocks.
    #[arg(long, value_name = "SECS", default_value_t = 0.1, value_parser = flush_interval)]
    pub flush_interval: f64,

    /// Threads that encode the documents (NDJSON) while one reads and decodes: 0 (the
    /// default) for one more than the cores (at most 8), 1 to encode on the reading thread
    /// (the least CPU in all), up to 64. The output is the same byte for byte whatever the
    /// number.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=64))]
    pub threads: u8,

    #[command(flatten)]
    pub enrich: EnrichArgs,
}

const DETECT_HELP: &str = "\
Examples:
  flowlog detect flows.log.gz                      findings as OCSF, one per line
  flowlog detect --to ecs --watchlist bad.txt *.gz ECS alerts; watch-list hits too
  flowlog detect --rules detect.toml --state s.json new/*.gz
                                                   thresholds from a file; windows still open
                                                   at the end kept for the next run";

/// `flowlog detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Inputs to read, in order; `-` is standard input (the default).
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,

    /// Format of records not preceded by a header line (as for `transform`).
    #[arg(long, value_name = "FMT")]
    pub format: Option<String>,

    /// Shape of the findings.
    #[arg(long, value_enum, default_value_t = FindingShape::Ocsf)]
    pub to: FindingShape,

    /// The rules' settings: a TOML file with the keys of a configuration's `[detect]`
    /// table (or a whole configuration, whose `[detect]` table is used). Default: every
    /// rule with its published thresholds.
    #[arg(long, value_name = "TOML")]
    pub rules: Option<PathBuf>,

    /// Keep the detection state in this file: taken up at the start, and at the end the
    /// windows still open are saved there instead of being closed, for the next run.
    /// Without it, every window closes when the input ends.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// Append the findings to this file instead of writing them to standard output.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Append records that cannot be decoded to this file, as NDJSON (source, line,
    /// reason, raw). Without it they are reported on standard error.
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,

    /// No summary and no warnings on standard error.
    #[arg(long, short)]
    pub quiet: bool,

    #[command(flatten)]
    pub enrich: EnrichArgs,
}

/// `detect --to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FindingShape {
    /// OCSF 1.1.0 Detection Finding (class 2004).
    Ocsf,
    /// ECS alert documents (`event.kind: alert`).
    Ecs,
}

/// Enrichment sources (all optional; see docs/enrichment.md).
#[derive(Debug, Args, Default)]
pub struct EnrichArgs {
    /// GeoIP database (MaxMind DB: GeoIP2/GeoLite2 City or Country, DB-IP lite). Repeat
    /// for DB-IP's separate IPv4 and IPv6 files. Without it, geoipupdate's default
    /// directories are searched.
    #[arg(long, value_name = "MMDB")]
    pub geoip: Vec<PathBuf>,

    /// ASN database: a MaxMind DB (GeoLite2-ASN layout) or a CSV of `start,end,asn,org`
    /// ranges. Repeatable.
    #[arg(long, value_name = "MMDB|CSV")]
    pub asn: Vec<PathBuf>,

    /// ENI inventory: JSON from `aws ec2 describe-network-interfaces` and/or
    /// `describe-instances` (repeatable), or `ec2` to read it live with the default AWS
    /// credential chain.
    #[arg(long, value_name = "FILE|ec2")]
    pub eni_inventory: Vec<PathBuf>,

    /// Seconds between refreshes of the live (`ec2`) inventory.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub eni_refresh: u64,

    /// AWS region for the live inventory (default: the SDK's region chain).
    #[arg(long, value_name = "REGION")]
    pub aws_region: Option<String>,

    /// EC2 endpoint URL for the live inventory (a VPC endpoint; moto in tests). The SDK
    /// also reads AWS_ENDPOINT_URL_EC2.
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,

    /// AWS's ip-ranges.json (service and region of AWS addresses).
    #[arg(long, value_name = "FILE")]
    pub aws_ip_ranges: Option<PathBuf>,

    /// Addresses and CIDR networks to flag, one per line, `#` comments. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub watchlist: Vec<PathBuf>,

    /// Do not look for GeoIP databases in geoipupdate's directories.
    #[arg(long)]
    pub no_geoip_search: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (TOML; every key is in docs/configuration.md).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Also read a sample where that has an effect: an SQS source receives up to ten
    /// waiting messages (left visible) and reads the first byte of the objects they name,
    /// which proves s3:GetObject and KMS access, but counts as a receive of each message.
    #[arg(long)]
    pub sample: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Only the file itself: syntax, types, interpolation, formats and settings; no look
    /// at the files and directories it names (for a configuration written for another
    /// machine). Environment variables are still interpolated.
    #[arg(long)]
    pub no_environment: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Read what the sources hold now (a directory listed once, followed files to their
    /// current end, a queue until it is empty), deliver it, and exit: 0 when everything
    /// read was delivered, 1 when anything was dead-lettered or failed.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event (for log shippers).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Ndjson,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputShape {
    /// The record's fields under AWS's names in snake_case; `-` fields left out.
    Raw,
    /// Elastic Common Schema, as Elastic's aws.vpcflow integration writes it.
    Ecs,
    /// OCSF Network Activity (4001), as Amazon Security Lake maps flow logs.
    Ocsf,
    /// Flat JSON with Splunk CIM Network_Traffic field names.
    Cim,
}

#[derive(Debug, Args)]
pub struct FieldsArgs {
    /// Print CSV (the content of schemas/flow-log-fields.csv) instead of a table.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SchemaArgs {
    /// Every ECS field with its Elasticsearch type, as CSV (schemas/ecs-fields.csv).
    #[arg(long)]
    pub ecs_fields: bool,

    /// An Elasticsearch component template with mappings for every ECS field
    /// (schemas/elasticsearch/component-template.json).
    #[arg(long)]
    pub component_template: bool,
}

/// A duration: seconds, or a number with `s`, `m`, `h` or `d`.
fn duration_secs(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if scale > 0 => n
            .checked_mul(scale)
            .ok_or_else(|| format!("`{text}` is too long")),
        _ => Err(format!(
            "`{text}` is not a duration: seconds, or a number with s, m, h or d (90m)"
        )),
    }
}

/// A flush interval: seconds, from 0 (every read) up to an hour.
fn flush_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.0..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "`{text}` is not a number of seconds from 0 to 3600"
        )),
    }
}
