//! Which objects a backfill reads: the walk down a flow log's folders, listing only the
//! partitions a time range can need.

use crate::layout::{DateParts, Level, ObjectName, Style, TimeRange, AWS_LOGS};
use crate::listing::{ListError, Listing, ObjectInfo};

/// What a backfill asks for. An empty list lets everything through.
#[derive(Clone, Debug)]
pub struct Filter {
    pub range: TimeRange,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub flow_logs: Vec<String>,
}

impl Filter {
    fn wants(list: &[String], value: &str) -> bool {
        list.is_empty() || list.iter().any(|v| v == value)
    }

    /// Whether a folder at `level` named `value` may lead to wanted objects.
    fn wants_folder(&self, level: Level, value: &str) -> bool {
        match level {
            Level::Account => Self::wants(&self.accounts, value),
            Level::Region => Self::wants(&self.regions, value),
            _ => true,
        }
    }

    /// Whether an object found in a wanted partition is read: by what its name says,
    /// when it is one of AWS's names (anything else in a partition is read).
    fn wants_object(&self, key: &str) -> bool {
        let file = key.rsplit('/').next().unwrap_or(key);
        let Some(name) = ObjectName::read(file) else {
            return true;
        };
        let (from, to) = self.range.widened();
        Self::wants(&self.accounts, name.account)
            && Self::wants(&self.regions, name.region)
            && Self::wants(&self.flow_logs, name.flow_log_id)
            && from <= name.stamp
            && name.stamp <= to
    }
}

/// The objects to read, and how they were found.
#[derive(Debug, Default)]
pub struct Plan {
    /// The layout found (`None` when none was, and everything under the root was listed).
    pub style: Option<Style>,
    /// The prefixes whose objects were listed, in order.
    pub prefixes: Vec<String>,
    /// The objects to read, sorted by key, each once.
    pub objects: Vec<ObjectInfo>,
    /// Objects listed in those prefixes that their names put outside the filter.
    pub passed_over: usize,
    /// What the user should know (a layout not recognised, a folder that is not a date).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// A folder on the way down: its prefix, the level its subfolders are at, and what the
/// path so far says.
struct Node {
    prefix: String,
    level: Level,
    dates: DateParts,
}

/// Plans a backfill of what lies under `root` (`""` or a prefix ending in `/`).
///
/// The root may stop anywhere: above `AWSLogs/` (a bucket, a user prefix), at it, or
/// inside the layout (an account, a region, a month). Folders are listed one level at a
/// time, and only those the filter can want are opened; a day wholly inside the range
/// (with its margin) is listed in one go, hours and all; a day at an edge is looked into
/// hour by hour when it has hour folders. A root under which no known layout is found is
/// listed whole, with a warning.
pub async fn plan<L: Listing>(listing: &L, root: &str, filter: &Filter) -> Result<Plan, ListError> {
    let mut plan = Plan::default();
    let root = if root.is_empty() || root.ends_with('/') {
        root.to_string()
    } else {
        format!("{root}/")
    };
    let mut pending = match start(listing, &root, filter, &mut plan).await? {
        Start::Walk(node) => vec![node],
        Start::Whole => {
            take(listing, &root, filter, &mut plan).await?;
            return Ok(finish(plan));
        }
        Start::Nothing(why) => {
            plan.warnings.push(format!(
                "{}: nothing to read: {why}",
                listing.describe(&root)
            ));
            return Ok(finish(plan));
        }
        Start::Unknown => {
            plan.style = None;
            plan.warnings.push(format!(
                "{}: no flow-log layout (AWSLogs/<account>/vpcflowlogs/... or its Hive form) \
                 found; every object under it is listed",
                listing.describe(&root)
            ));
            take(listing, &root, filter, &mut plan).await?;
            return Ok(finish(plan));
        }
    };
    while let Some(node) = pending.pop() {
        let listed = listing.list(&node.prefix, false).await?;
        if node.level == Level::Hour {
            // A day at an edge of the range: its own objects (daily partitions) and the
            // hours that matter (hourly partitions).
            keep(&listed.objects, filter, &mut plan);
            plan.prefixes.push(node.prefix.clone());
        }
        for folder in listed.folders.iter().rev() {
            let name = &folder[node.prefix.len()..folder.len() - 1];
            let Some((style, value)) = node.level.read(name) else {
                if node.level >= Level::Year {
                    plan.warnings.push(format!(
                        "{}: not a {} folder of the layout; passed over",
                        listing.describe(folder),
                        node.level.name()
                    ));
                }
                continue;
            };
            // Both layouts may sit side by side (two flow logs of one bucket with
            // different settings): each folder is read as what it is.
            plan.style.get_or_insert(style);
            if !filter.wants_folder(node.level, value) {
                continue;
            }
            let dates = node.dates.with(node.level, value);
            if let Some((from, to)) = dates.span() {
                if !filter.range.may_hold(from, to) {
                    continue;
                }
                let whole = node.level == Level::Hour
                    || (node.level == Level::Day && filter.range.covers(from, to));
                if whole {
                    take(listing, folder, filter, &mut plan).await?;
                    continue;
                }
            } else if node.level >= Level::Year {
                // A date that does not exist (month=13 is refused by its name, February 30
                // only here).
                plan.warnings.push(format!(
                    "{}: not a date; passed over",
                    listing.describe(folder)
                ));
                continue;
            }
            let Some(level) = node.level.next() else {
                continue;
            };
            pending.push(Node {
                prefix: folder.clone(),
                level,
                dates,
            });
        }
    }
    Ok(finish(plan))
}

/// Where the walk starts.
enum Start {
    /// Down from this folder.
    Walk(Node),
    /// Everything beneath the root (an hour folder).
    Whole,
    /// Nothing: the root names an account, region or time not asked for.
    Nothing(String),
    /// No known layout under the root.
    Unknown,
}

/// The root read as far as it goes into the layout, or, above the layout, its `AWSLogs/`.
async fn start<L: Listing>(
    listing: &L,
    root: &str,
    filter: &Filter,
    plan: &mut Plan,
) -> Result<Start, ListError> {
    let parts: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
    let Some(at) = parts.iter().rposition(|p| *p == AWS_LOGS) else {
        let aws_logs = format!("{root}{AWS_LOGS}/");
        let listed = listing.list(root, false).await?;
        return Ok(if listed.folders.contains(&aws_logs) {
            Start::Walk(Node {
                prefix: aws_logs,
                level: Level::Account,
                dates: DateParts::default(),
            })
        } else {
            Start::Unknown
        });
    };
    let mut level = Some(Level::Account);
    let mut dates = DateParts::default();
    for part in &parts[at + 1..] {
        let Some((style, value)) = level.and_then(|here| here.read(part)) else {
            return Ok(Start::Unknown);
        };
        let here = level.expect("read");
        if *plan.style.get_or_insert(style) != style {
            return Ok(Start::Unknown);
        }
        if !filter.wants_folder(here, value) {
            return Ok(Start::Nothing(format!(
                "its {} is not one asked for",
                here.name()
            )));
        }
        dates = dates.with(here, value);
        level = here.next();
    }
    if let Some((from, to)) = dates.span() {
        if !filter.range.may_hold(from, to) {
            return Ok(Start::Nothing("its dates are outside the range".into()));
        }
        // Flows near the range's ends are delivered into the folders beside this one.
        let (wanted_from, wanted_to) = filter.range.widened();
        if from > wanted_from || to < wanted_to {
            plan.warnings.push(format!(
                "{}: a date folder: the objects in the folders beside it, where flows near \
                 the ends of the range are delivered (up to the margin later), are not looked \
                 at; give the URL only down to the region to include them",
                listing.describe(root)
            ));
        }
    }
    Ok(match level {
        Some(level) => Start::Walk(Node {
            prefix: root.to_string(),
            level,
            dates,
        }),
        None => Start::Whole,
    })
}

/// Lists everything beneath `prefix` and keeps what the filter wants.
async fn take<L: Listing>(
    listing: &L,
    prefix: &str,
    filter: &Filter,
    plan: &mut Plan,
) -> Result<(), ListError> {
    let listed = listing.list(prefix, true).await?;
    plan.prefixes.push(prefix.to_string());
    keep(&listed.objects, filter, plan);
    Ok(())
}

fn keep(objects: &[ObjectInfo], filter: &Filter, plan: &mut Plan) {
    for object in objects {
        if filter.wants_object(&object.key) {
            plan.objects.push(object.clone());
        } else {
            plan.passed_over += 1;
        }
    }
}

fn finish(mut plan: Plan) -> Plan {
    plan.objects.sort();
    plan.objects.dedup();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::at;
    use crate::listing::DirectoryListing;
    use chrono::{DateTime, Duration, Utc};

    /// One object AWS would have written.
    struct Written {
        key: String,
        account: &'static str,
        region: &'static str,
        flow_log: &'static str,
        stamp: DateTime<Utc>,
    }

    /// Objects every 30 minutes from 2026-07-30 to 2026-08-03 for two accounts, two
    /// regions and two flow logs, in `style`, daily or hourly, under `prefix`. An object
    /// stamped in the last minutes of an hour is in the next hour's folder, as delivery
    /// lags.
    fn bucket(style: Style, hourly: bool, prefix: &str) -> (tempfile::TempDir, Vec<Written>) {
        let dir = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        let mut stamp = at("2026-07-30T00:05:00Z");
        while stamp < at("2026-08-04T00:00:00Z") {
            for account in ["111111111111", "222222222222"] {
                for region in ["us-east-1", "eu-west-1"] {
                    for flow_log in ["fl-0aaa", "fl-tgw0bbb"] {
                        let delivered = stamp + Duration::minutes(10);
                        let f = |fmt: &str| delivered.format(fmt).to_string();
                        let partition = match style {
                            Style::Plain => format!(
                                "{account}/vpcflowlogs/{region}/{}/{}/{}/{}",
                                f("%Y"),
                                f("%m"),
                                f("%d"),
                                if hourly { f("%H/") } else { String::new() }
                            ),
                            Style::Hive => format!(
                                "aws-account-id={account}/aws-service=vpcflowlogs/\
                                 aws-region={region}/year={}/month={}/day={}/{}",
                                f("%Y"),
                                f("%m"),
                                f("%d"),
                                if hourly { f("hour=%H/") } else { String::new() }
                            ),
                        };
                        let key = format!(
                            "{prefix}AWSLogs/{partition}{account}_vpcflowlogs_{region}_\
                             {flow_log}_{}_{:08x}.log.gz",
                            stamp.format("%Y%m%dT%H%MZ"),
                            written.len()
                        );
                        let path = dir.path().join(&key);
                        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                        std::fs::write(&path, key.as_bytes()).unwrap();
                        written.push(Written {
                            key,
                            account,
                            region,
                            flow_log,
                            stamp,
                        });
                    }
                }
            }
            stamp += Duration::minutes(30);
        }
        (dir, written)
    }

    fn august_first() -> Filter {
        Filter {
            range: TimeRange {
                since: at("2026-08-01T00:00:00Z"),
                until: at("2026-08-02T00:00:00Z"),
                margin: Duration::hours(1),
            },
            accounts: vec!["222222222222".into()],
            regions: Vec::new(),
            flow_logs: vec!["fl-tgw0bbb".into()],
        }
    }

    fn run(listing: &DirectoryListing, root: &str, filter: &Filter) -> Plan {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(plan(listing, root, filter))
            .unwrap()
    }

    #[test]
    fn each_layout_gives_exactly_the_objects_of_the_range_and_lists_no_other_day() {
        for style in [Style::Plain, Style::Hive] {
            for hourly in [false, true] {
                for prefix in ["", "team/flows/"] {
                    let (dir, written) = bucket(style, hourly, prefix);
                    let filter = august_first();
                    let plan = run(&DirectoryListing::new(dir.path()), prefix, &filter);
                    let (from, to) = (at("2026-07-31T23:00:00Z"), at("2026-08-02T01:00:00Z"));
                    let expected: Vec<&str> = written
                        .iter()
                        .filter(|w| {
                            w.account == "222222222222"
                                && w.flow_log == "fl-tgw0bbb"
                                && from <= w.stamp
                                && w.stamp <= to
                        })
                        .map(|w| w.key.as_str())
                        .collect();
                    let mut expected = expected;
                    expected.sort();
                    let planned: Vec<&str> = plan.objects.iter().map(|o| o.key.as_str()).collect();
                    let case = format!("{style:?} hourly={hourly} prefix={prefix:?}");
                    assert_eq!(planned, expected, "{case}");
                    // Two regions, 26 hours (with the margins) at two objects an hour.
                    assert_eq!(planned.len(), 2 * 26 * 2, "{case}");
                    assert_eq!(plan.style, Some(style), "{case}");
                    assert!(plan.warnings.is_empty(), "{case}: {:?}", plan.warnings);
                    for listed in &plan.prefixes {
                        assert!(
                            !listed.contains("111111111111")
                                && ["/30/", "/03/", "=30/", "=03/"]
                                    .iter()
                                    .all(|day| !listed.contains(day)),
                            "{case}: listed {listed}"
                        );
                    }
                    if hourly {
                        // Of the days at the edges, only the hours the margin reaches.
                        assert!(
                            !plan.prefixes.iter().any(|p| p.ends_with("/31/22/")
                                || p.ends_with("hour=22/") && p.contains("day=31")),
                            "{case}: {:?}",
                            plan.prefixes
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_root_inside_the_layout_starts_there() {
        let (dir, written) = bucket(Style::Plain, true, "");
        let listing = DirectoryListing::new(dir.path());
        let mut filter = august_first();
        filter.accounts.clear();
        let plan = run(
            &listing,
            "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2026/08",
            &filter,
        );
        assert!(!plan.objects.is_empty());
        assert!(plan.objects.iter().all(|o| o
            .key
            .starts_with("AWSLogs/111111111111/vpcflowlogs/eu-west-1/2026/08/")));
        // July's side of the margin is in another month's folder, not under this root.
        let in_august = written
            .iter()
            .filter(|w| {
                w.account == "111111111111"
                    && w.region == "eu-west-1"
                    && w.flow_log == "fl-tgw0bbb"
                    && w.key.contains("/2026/08/")
                    && w.stamp <= at("2026-08-02T01:00:00Z")
            })
            .count();
        assert_eq!(plan.objects.len(), in_august);
        assert!(
            plan.warnings[0].contains("a date folder") && plan.warnings[0].contains("region"),
            "{:?}",
            plan.warnings
        );
        // A month wholly inside a range with its margin needs nothing beside it.
        let mut august = august_first();
        august.accounts.clear();
        august.range.since = at("2026-08-02T00:00:00Z");
        august.range.until = at("2026-08-03T00:00:00Z");
        let inside = run(
            &listing,
            "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2026/08",
            &august,
        );
        assert!(inside.warnings.is_empty(), "{:?}", inside.warnings);

        // An hour folder is read whole (what its names allow).
        let hour = run(
            &listing,
            "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2026/08/01/12/",
            &filter,
        );
        assert_eq!(hour.objects.len(), 2, "{:?}", hour.objects);

        // A root naming another account, or days outside the range, holds nothing.
        filter.accounts = vec!["222222222222".into()];
        let other = run(&listing, "AWSLogs/111111111111/", &filter);
        assert!(other.objects.is_empty());
        assert!(other.warnings[0].contains("account is not one asked for"));
        let july = run(
            &listing,
            "AWSLogs/222222222222/vpcflowlogs/us-east-1/2026/07/30/",
            &filter,
        );
        assert!(july.objects.is_empty());
        assert!(july.warnings[0].contains("outside the range"));
    }

    #[test]
    fn an_unknown_layout_is_listed_whole_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        for key in [
            "export/a.log.gz",
            "export/deep/b.log.gz",
            "export/deep/123456789012_vpcflowlogs_us-east-1_fl-1_20250101T0000Z_x.log.gz",
        ] {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let plan = run(
            &DirectoryListing::new(dir.path()),
            "export",
            &august_first(),
        );
        assert_eq!(plan.style, None);
        assert!(
            plan.warnings[0].contains("no flow-log layout"),
            "{:?}",
            plan.warnings
        );
        // Names that are not AWS's are read; an AWS name is still judged by what it says.
        let keys: Vec<&str> = plan.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["export/a.log.gz", "export/deep/b.log.gz"]);
        assert_eq!(plan.passed_over, 1);
    }

    #[test]
    fn folders_that_are_not_dates_are_passed_over_and_said() {
        let dir = tempfile::tempdir().unwrap();
        for key in [
            "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/08/01/ok.log.gz",
            "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/08/tmp/stray.log.gz",
            "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/02/30/impossible.log.gz",
            "AWSLogs/123456789012/CloudTrail/us-east-1/2026/08/01/trail.json.gz",
        ] {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let mut filter = august_first();
        filter.accounts.clear();
        filter.range.since = at("2026-01-01T00:00:00Z");
        filter.range.until = at("2027-01-01T00:00:00Z");
        let plan = run(&DirectoryListing::new(dir.path()), "", &filter);
        let keys: Vec<&str> = plan.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/08/01/ok.log.gz"]
        );
        assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
        assert!(plan.warnings[0].contains("02/30/: not a date"));
        assert!(plan.warnings[1].contains("08/tmp/: not a day folder"));
    }
}
