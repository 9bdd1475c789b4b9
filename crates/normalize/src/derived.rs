//! Derived values more than one target writes.

use crate::json::Out;
use crate::network::{transport_name, TCP_FLAG_NAMES};
use crate::template::{Derivation, Inputs};

/// The transport protocol's IANA keyword (`tcp`) from `protocol`.
pub(crate) static TRANSPORT: Derivation = Derivation {
    inputs: &["protocol"],
    bound: |_| 24,
    write: |inputs, row, out| match inputs.int(0, row).and_then(transport_name) {
        Some(name) => {
            out.plain_str(name);
            true
        }
        None => false,
    },
};

/// The bound of [`write_tcp_flags`].
pub(crate) fn tcp_flags_bound(_: &Inputs<'_>) -> usize {
    2 + TCP_FLAG_NAMES.iter().map(|n| n.len() + 3).sum::<usize>()
}

/// The names of the TCP flags set in input 0, lowest bit first (`18` -> `["syn","ack"]`),
/// spelled as `names` spells them; nothing when no flag is set.
pub(crate) fn write_tcp_flags(
    inputs: &Inputs<'_>,
    row: usize,
    out: &mut Out<'_>,
    names: &[&str; 8],
) -> bool {
    let flags = match inputs.int(0, row) {
        Some(f) if f > 0 => f,
        _ => return false,
    };
    // Each name starts with a comma; the first becomes the opening bracket.
    let open = out.pos();
    for (bit, name) in names.iter().enumerate() {
        if flags & (1 << bit) != 0 {
            out.byte(b',');
            out.plain_str(name);
        }
    }
    out.set(open, b'[');
    out.byte(b']');
    true
}

/// The value of the first input the row has (a field, else what enrichment found).
pub(crate) fn write_first_present(inputs: &Inputs<'_>, row: usize, out: &mut Out<'_>) -> bool {
    (0..inputs.len()).any(|i| inputs.write(i, row, out))
}

/// The bound of [`write_first_present`].
pub(crate) fn first_present_bound(inputs: &Inputs<'_>) -> usize {
    (0..inputs.len())
        .map(|i| inputs.value_bound(i))
        .max()
        .unwrap_or(0)
}

/// The account (ECS `cloud.account.id`, OCSF `cloud.account.uid`): the record's, else
/// the account that owns the CloudWatch Logs group it came through (custom formats often
/// leave `account-id` out).
pub(crate) static ACCOUNT_ID: Derivation = Derivation {
    inputs: &["account_id", "envelope_owner"],
    bound: first_present_bound,
    write: write_first_present,
};
