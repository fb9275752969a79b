//! Delivery latencies in fixed log-spaced buckets: a 10,000-subscriber run
//! delivers millions of messages a round, too many to keep one sample
//! each, and percentiles from buckets need a fixed 8 KiB per reader thread.
//!
//! Values below 16 ns are exact; above, each power of two is split into 16
//! buckets, so a percentile is reported within ±3 % (the bucket's middle).

/// Buckets per power of two, as bits.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) << SUB_BITS;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

/// The bucket of `v`.
fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // v's highest set bit, at least SUB_BITS
    let mantissa = (v >> (e - SUB_BITS)) & (SUB - 1);
    (((e - SUB_BITS + 1) as u64) << SUB_BITS | mantissa) as usize
}

/// The middle of bucket `i`.
fn middle(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i >> SUB_BITS) - 1; // e - SUB_BITS
    let low = (SUB | (i & (SUB - 1))) << shift;
    low + (1u64 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `q`th quantile (0 to 1), or `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(middle(i));
            }
        }
        None
    }
}

// Run by the stand-alone copy used to develop the bench (a bench with
// `harness = false` runs no #[test]); written without `use super::*`,
// which a check of the bench (cfg(test) on, #[test] functions dropped)
// would call unused.
#[cfg(test)]
mod tests {
    #[test]
    fn buckets_are_within_three_percent() {
        use super::{index, middle, BUCKETS};
        for v in [
            0,
            1,
            15,
            16,
            17,
            100,
            1_000,
            123_456,
            9_999_999_999,
            u64::MAX / 3,
        ] {
            let m = middle(index(v));
            let err = (m as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 0.035, "{v} -> {m}");
            assert!(index(v) < BUCKETS);
        }
    }

    #[test]
    fn quantiles() {
        let mut h = super::Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.04, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.04, "{p99}");
    }
}
