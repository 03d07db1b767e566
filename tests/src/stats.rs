//! Medians and ranges of repeated measurements, for the benchmarks' tables.

/// The median of `values`, `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The median and the range (`min-max`) of `values`, one decimal; `-` for none.
pub fn summary(values: &[f64]) -> (String, String) {
    let Some(m) = median(values) else {
        return ("-".into(), "-".into());
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (format!("{m:.1}"), format!("{min:.1}-{max:.1}"))
}
