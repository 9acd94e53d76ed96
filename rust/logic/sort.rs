//! The one sort of the module: an in-place heapsort, so the kernel build
//! carries no recursive sort and no allocation, and a slice of any length
//! is sorted in `O(n log n)`.

/// Sorts `v` by `key`, ascending (not stable).
pub fn heapsort_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    let sift_down = |v: &mut [T], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && key(&v[child]) < key(&v[child + 1]) {
            child += 1;
        }
        if key(&v[root]) >= key(&v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    };
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift_down(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// Sorts `v` and moves each distinct value once to its front; returns how
/// many there are (the caller truncates to that).
pub fn sort_dedup(v: &mut [u64]) -> usize {
    heapsort_by_key(v, |x| *x);
    let mut n = 0;
    for i in 0..v.len() {
        if n == 0 || v[i] != v[n - 1] {
            v[n] = v[i];
            n += 1;
        }
    }
    n
}

/// The runs of consecutive values of `v`, in order, as `(first, count)`:
/// `[3, 4, 5, 9, 10]` gives `(3, 3)` then `(9, 2)`.  A value that does not
/// follow its predecessor by exactly one starts a new run.
pub fn runs(v: &[u64]) -> Runs<'_> {
    Runs { v, i: 0 }
}

/// Iterator of [`runs`].
pub struct Runs<'a> {
    v: &'a [u64],
    i: usize,
}

impl Iterator for Runs<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let first = *self.v.get(self.i)?;
        let mut n = 1u64;
        while self
            .v
            .get(self.i + n as usize)
            .is_some_and(|&x| first.checked_add(n) == Some(x))
        {
            n += 1;
        }
        self.i += n as usize;
        Some((first, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn sorts_like_std() {
        let mut rng = crate::Rng::new(11);
        for len in 0..200 {
            let mut v: Vec<u64> = (0..len).map(|_| rng.range(0, 50)).collect();
            let mut want = v.clone();
            want.sort_unstable();
            heapsort_by_key(&mut v, |x| *x);
            assert_eq!(v, want, "len {len}");
        }
    }

    #[test]
    fn dedup_keeps_each_value_once() {
        let mut rng = crate::Rng::new(12);
        for len in 0..200 {
            let mut v: Vec<u64> = (0..len).map(|_| rng.range(0, 30)).collect();
            let mut want = v.clone();
            want.sort_unstable();
            want.dedup();
            let n = sort_dedup(&mut v);
            assert_eq!(&v[..n], &want[..], "len {len}");
        }
    }

    #[test]
    fn runs_of_consecutive_values() {
        let r: Vec<(u64, u64)> = runs(&[3, 4, 5, 9, 10, 10, 12]).collect();
        assert_eq!(r, [(3, 3), (9, 2), (10, 1), (12, 1)]);
        assert_eq!(runs(&[]).count(), 0);
        let r: Vec<(u64, u64)> = runs(&[u64::MAX - 1, u64::MAX, 0]).collect();
        assert_eq!(r, [(u64::MAX - 1, 2), (0, 1)]);
        // Against a model: the runs cover the input in order.
        let mut rng = crate::Rng::new(13);
        for len in 0..100 {
            let v: Vec<u64> = (0..len).map(|_| rng.range(0, 20)).collect();
            let mut flat = Vec::new();
            for (f, n) in runs(&v) {
                assert!(n >= 1);
                flat.extend(f..f + n);
            }
            assert_eq!(flat, v);
        }
    }

    #[test]
    fn by_key() {
        let mut v = [(3u64, 'a'), (1, 'b'), (2, 'c'), (1, 'd')];
        heapsort_by_key(&mut v, |x| x.0);
        assert_eq!(v.map(|x| x.0), [1, 1, 2, 3]);
    }
}
