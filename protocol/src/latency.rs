//! LATENCY HISTOGRAM's reply shape: a node builds it from its histograms and the router builds
//! the same from the shards' replies summed.

use bytes::Bytes;

use crate::resp::Reply;

/// One command's entry: its name, then `calls` and `histogram_usec` (µs → cumulative count).
pub fn histogram_entry(
    name: Bytes,
    calls: i64,
    points: impl IntoIterator<Item = (i64, i64)>,
) -> (Reply, Reply) {
    let points = points
        .into_iter()
        .map(|(usec, count)| (Reply::Int(usec), Reply::Int(count)))
        .collect();
    (
        Reply::Bulk(name),
        Reply::Map(vec![
            (Reply::bulk_str("calls"), Reply::Int(calls)),
            (Reply::bulk_str("histogram_usec"), Reply::Map(points)),
        ]),
    )
}
