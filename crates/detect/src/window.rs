//! Event-time windows: tumbling windows keyed by what a rule counts, closed by a
//! watermark (the latest record time seen, less the allowed lateness), with a cap on
//! keys; and the evidence each key gathers.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::flow::{Example, Flow};

/// A window's keys. Hashed with foldhash rather than SipHash: keys are addresses and
/// ports, hashed once per record by every rule, where SipHash was a visible part of the
/// cost; the seed is still random per process.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, hashbrown::DefaultHashBuilder>;

/// What a window's entry weighs when keys must be evicted: the lighter are dropped.
pub(crate) trait Weighted {
    fn weight(&self) -> f64;
}

/// The open windows of one rule, by start (milliseconds).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash, V: Serialize",
    deserialize = "K: Deserialize<'de> + Eq + Hash, V: Deserialize<'de>"
))]
pub(crate) struct Windows<K, V> {
    len_ms: i64,
    max_keys: usize,
    #[serde(with = "open_windows")]
    open: BTreeMap<i64, HashMap<K, V>>,
    /// Records that arrived for a window already closed.
    pub late: u64,
    /// Keys dropped because a window held `max_keys`.
    pub evicted: u64,
}

impl<K: Hash + Eq, V: Default + Weighted> Windows<K, V> {
    pub(crate) fn new(window_secs: u64, max_keys: usize) -> Self {
        Self {
            len_ms: window_secs as i64 * 1000,
            max_keys,
            open: BTreeMap::new(),
            late: 0,
            evicted: 0,
        }
    }

    pub(crate) fn len_ms(&self) -> i64 {
        self.len_ms
    }

    /// The entry of `key` in the window holding `time`, unless that window has closed
    /// (the record is late, and counted).
    pub(crate) fn entry(&mut self, time: i64, watermark: i64, key: K) -> Option<&mut V> {
        let start = time.div_euclid(self.len_ms).saturating_mul(self.len_ms);
        if start.saturating_add(self.len_ms) <= watermark {
            self.late += 1;
            return None;
        }
        let keys = self.open.entry(start).or_default();
        if keys.len() >= self.max_keys && !keys.contains_key(&key) {
            self.evicted += evict_lighter_half(keys) as u64;
        }
        Some(keys.entry(key).or_default())
    }

    /// Removes and returns, oldest first, the windows that end at or before `watermark`.
    pub(crate) fn close(&mut self, watermark: i64) -> Vec<(i64, HashMap<K, V>)> {
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if entry.key().saturating_add(self.len_ms) > watermark {
                break;
            }
            closed.push(entry.remove_entry());
        }
        closed
    }

    /// Keys held in open windows.
    pub(crate) fn keys(&self) -> usize {
        self.open.values().map(HashMap::len).sum()
    }
}

/// Drops the entries at or below the median weight; returns how many.
fn evict_lighter_half<K: Hash + Eq, V: Weighted>(keys: &mut HashMap<K, V>) -> usize {
    let mut weights: Vec<f64> = keys.values().map(Weighted::weight).collect();
    let middle = weights.len() / 2;
    let (_, median, _) = weights.select_nth_unstable_by(middle, f64::total_cmp);
    let median = *median;
    let before = keys.len();
    keys.retain(|_, v| v.weight() > median);
    // All of equal weight: drop half of them anyway, or the cap would not hold.
    if keys.len() == before {
        let mut n = 0;
        keys.retain(|_, _| {
            n += 1;
            n % 2 == 0
        });
    }
    before - keys.len()
}

/// Serializes the open windows as a list of (start, [(key, value)]): JSON object keys
/// must be strings, and window keys are tuples.
mod open_windows {
    use super::*;
    use serde::{Deserializer, Serializer};

    type Open<K, V> = BTreeMap<i64, HashMap<K, V>>;

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        open: &Open<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            open.iter()
                .map(|(start, keys)| (start, keys.iter().collect::<Vec<_>>())),
        )
    }

    pub fn deserialize<'de, D, K, V>(d: D) -> Result<Open<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
    {
        let list: Vec<(i64, Vec<(K, V)>)> = Vec::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|(start, keys)| (start, keys.into_iter().collect()))
            .collect())
    }
}

/// What one key saw in a window: the evidence a finding carries.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub records: u64,
    pub bytes: u64,
    pub packets: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Earliest `start` and latest `end` (milliseconds).
    pub first: i64,
    pub last: i64,
    #[serde(with = "shared::examples")]
    pub examples: Vec<Example>,
    /// Where the first record was seen.
    #[serde(with = "shared::context")]
    pub context: Option<Arc<Context>>,
}

/// The interface, instance, account and region of a key's first record: one for each
/// such four seen, shared by the keys of every rule ([`crate::flow::Contexts`]).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Context {
    pub interface_id: Option<String>,
    pub instance_id: Option<String>,
    pub account_id: Option<String>,
    pub region: Option<String>,
}

impl Context {
    pub(crate) fn new(parts: [Option<&str>; 4]) -> Self {
        let [interface_id, instance_id, account_id, region] = parts.map(|p| p.map(str::to_owned));
        Self {
            interface_id,
            instance_id,
            account_id,
            region,
        }
    }

    pub(crate) fn parts(&self) -> [Option<&str>; 4] {
        [
            self.interface_id.as_deref(),
            self.instance_id.as_deref(),
            self.account_id.as_deref(),
            self.region.as_deref(),
        ]
    }
}

impl Seen {
    pub(crate) fn add(&mut self, flow: &Flow<'_>, examples: usize) {
        if self.records == 0 {
            self.first = flow.time;
            self.last = flow.end;
            self.context = Some(flow.context());
        } else {
            self.first = self.first.min(flow.time);
            self.last = self.last.max(flow.end);
        }
        self.records += 1;
        self.bytes = self.bytes.saturating_add(flow.bytes);
        self.packets = self.packets.saturating_add(flow.packets);
        match flow.accepted {
            Some(true) => self.accepted += 1,
            Some(false) => self.rejected += 1,
            None => {}
        }
        if self.examples.len() < examples {
            self.examples.push(Example {
                prefix: flow.prefix.clone(),
                line: flow.line,
            });
        }
    }
}

impl Weighted for Seen {
    fn weight(&self) -> f64 {
        self.records as f64
    }
}

/// What many keys share, written once in a snapshot: the contexts (a few hundred
/// interfaces for a hundred thousand keys) and the sources' event-id prefixes. A key
/// refers to them by number, which made the state a third of its size and as much faster
/// to save, and keys taken up again share them as they did before.
///
/// The tables are filled while the rules' states are written ([`Shared::writing`]) and
/// read while they are taken up ([`Shared::reading`]), on the same thread. Without a
/// table (a state saved before tables existed), the values are written out in full,
/// which reading accepts too.
pub(crate) mod shared {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};

    use super::Context;

    /// The tables of one snapshot, as written beside the rules' states.
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Shared {
        pub contexts: Vec<Arc<Context>>,
        pub prefixes: Vec<Arc<str>>,
    }

    #[derive(Default)]
    struct Writing {
        shared: Shared,
        /// By address: contexts are shared `Arc`s.
        contexts: HashMap<*const Context, u32>,
        prefixes: HashMap<Arc<str>, u32>,
    }

    enum Active {
        Writing(Writing),
        Reading(Shared),
    }

    thread_local! {
        static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
    }

    /// Ends the tables' use on this thread, however `write` or `read` ends.
    struct Done;

    impl Drop for Done {
        fn drop(&mut self) {
            ACTIVE.take();
        }
    }

    /// Makes `active` the thread's tables; an error if some are in use already (the
    /// state would be written with numbers into someone else's tables).
    fn begin(active: Active) -> Result<Done, String> {
        ACTIVE.with_borrow_mut(|a| match a {
            Some(_) => Err("the detection state is being written or read already".to_owned()),
            None => {
                *a = Some(active);
                Ok(Done)
            }
        })
    }

    impl Shared {
        /// Runs `write` with tables filled by what it writes; returns its result and
        /// the tables.
        pub(crate) fn writing<T>(write: impl FnOnce() -> T) -> Result<(T, Shared), String> {
            let _done = begin(Active::Writing(Writing::default()))?;
            let out = write();
            match ACTIVE.take() {
                Some(Active::Writing(w)) => Ok((out, w.shared)),
                _ => Err("the detection state's tables were lost while it was written".into()),
            }
        }

        /// Runs `read` with these tables to resolve what it reads.
        pub(crate) fn reading<T>(self, read: impl FnOnce() -> T) -> Result<T, String> {
            let _done = begin(Active::Reading(self))?;
            Ok(read())
        }
    }

    /// A value in full, or its number in a table.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry<T> {
        Number(u32),
        Full(T),
    }

    fn resolve<T: Clone>(
        entry: Entry<T>,
        table: impl FnOnce(&Shared) -> &[T],
    ) -> Result<T, String> {
        match entry {
            Entry::Full(value) => Ok(value),
            Entry::Number(n) => ACTIVE.with_borrow(|a| match a {
                Some(Active::Reading(shared)) => table(shared)
                    .get(n as usize)
                    .cloned()
                    .ok_or_else(|| format!("no shared entry {n}")),
                _ => Err(format!("shared entry {n} without a table")),
            }),
        }
    }

    pub(crate) mod context {
        use super::*;
        use serde::{de::Error as _, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            context: &Option<Arc<Context>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let Some(context) = context else {
                return s.serialize_none();
            };
            let number = ACTIVE.with_borrow_mut(|a| match a {
                Some(Active::Writing(w)) => {
                    let next = w.shared.contexts.len() as u32;
                    let n = *w.contexts.entry(Arc::as_ptr(context)).or_insert(next);
                    if n == next {
                        w.shared.contexts.push(Arc::clone(context));
                    }
                    Some(n)
                }
                _ => None,
            });
            match number {
                Some(n) => s.serialize_some(&n),
                None => s.serialize_some(context.as_ref()),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Arc<Context>>, D::Error> {
            Option::<Entry<Arc<Context>>>::deserialize(d)?
                .map(|e| resolve(e, |s| &s.contexts))
                .transpose()
                .map_err(D::Error::custom)
        }
    }

    pub(crate) mod examples {
        use super::*;
        use crate::flow::Example;
        use serde::ser::SerializeSeq;
        use serde::{de::Error as _, Deserializer, Serializer};

        /// An example as saved: `[prefix number, line]`, or in full.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Saved {
            Numbered(u32, u64),
            Full(Example),
        }

        pub fn serialize<S: Serializer>(examples: &[Example], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(examples.len()))?;
            for example in examples {
                let number = ACTIVE.with_borrow_mut(|a| match a {
                    Some(Active::Writing(w)) => {
                        let next = w.shared.prefixes.len() as u32;
                        let n = *w
                            .prefixes
                            .entry(Arc::clone(&example.prefix))
                            .or_insert(next);
                        if n == next {
                            w.shared.prefixes.push(Arc::clone(&example.prefix));
                        }
                        Some(n)
                    }
                    _ => None,
                });
                match number {
                    Some(n) => seq.serialize_element(&(n, example.line))?,
                    None => seq.serialize_element(example)?,
                }
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Example>, D::Error> {
            Vec::<Saved>::deserialize(d)?
                .into_iter()
                .map(|saved| match saved {
                    Saved::Full(example) => Ok(example),
                    Saved::Numbered(n, line) => Ok(Example {
                        prefix: resolve(Entry::Number(n), |s| &s.prefixes)?,
                        line,
                    }),
                })
                .collect::<Result<_, String>>()
                .map_err(D::Error::custom)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tables_in_use_are_not_taken_again_and_are_let_go() {
            let (nested, _) = Shared::writing(|| {
                (
                    Shared::writing(|| ()).is_err(),
                    Shared::default().reading(|| ()).is_err(),
                )
            })
            .unwrap();
            assert_eq!(nested, (true, true));
            // Done with, they can be taken up again.
            assert!(Shared::default().reading(|| ()).is_ok());
        }
    }
}
