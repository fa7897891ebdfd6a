//! Order statistics shared by several stages (the relief mix, the model's blue gate and
//! registration), kept in one place so they agree on what a median is.

/// The median of `values`, NaN when there are none. For an even count it is the upper of the
/// two middle values: one of the values, found by one selection rather than a sort.
pub(crate) fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f64::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value_and_the_upper_of_two() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(std::iter::empty()).is_nan());
    }
}
