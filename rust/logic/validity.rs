//! The persistent validity map: one bit per chunk, set once the chunk's
//! snapshot copy is in the store.
//!
//! Bit `c` is bit `c % 64` of the little-endian u64 word `c / 64`, i.e. bit
//! `c % 8` of byte `c / 8`. Bits are set one word at a time, so that the
//! caller can persist the changed word with a single failure-atomic 8-byte
//! store. Every function refuses chunks outside the map instead of
//! panicking.

/// A chunk number or chunk count beyond the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

const WORD: usize = 8;

/// Byte index and mask of `chunk`, if its whole word lies inside `map`.
fn locate(map: &[u8], chunk: u64) -> Result<(usize, u8), OutOfRange> {
    let byte = usize::try_from(chunk / 8).map_err(|_| OutOfRange)?;
    let word_end = (byte / WORD + 1).checked_mul(WORD).ok_or(OutOfRange)?;
    if word_end > map.len() {
        return Err(OutOfRange);
    }
    Ok((byte, 1 << (chunk % 8)))
}

/// Checks that the first `nr_chunks` bits lie inside `map`.
fn check_len(map: &[u8], nr_chunks: u64) -> Result<(), OutOfRange> {
    match nr_chunks.checked_sub(1) {
        Some(last) => locate(map, last).map(|_| ()),
        None => Ok(()),
    }
}

/// Whether `chunk` is marked valid (preserved).
pub fn test(map: &[u8], chunk: u64) -> Result<bool, OutOfRange> {
    let (byte, mask) = locate(map, chunk)?;
    Ok(map.get(byte).is_some_and(|b| b & mask != 0))
}

/// Marks `chunk` valid. Returns `None` if it already was, otherwise the byte
/// offset of its 8-byte word in the map and the word's new little-endian
/// content, which the caller must persist.
pub fn set(map: &mut [u8], chunk: u64) -> Result<Option<(usize, [u8; 8])>, OutOfRange> {
    let (byte, mask) = locate(map, chunk)?;
    let b = map.get_mut(byte).ok_or(OutOfRange)?;
    if *b & mask != 0 {
        return Ok(None);
    }
    *b |= mask;
    let off = byte / WORD * WORD;
    let mut word = [0u8; 8];
    word.copy_from_slice(map.get(off..off + WORD).ok_or(OutOfRange)?);
    Ok(Some((off, word)))
}

/// Marks every chunk of `chunks` valid and hands each maximal run of
/// adjacent words that changed to `persist(offset, words)` once, with the
/// words' new content: a batch of consecutive chunks costs one persistent
/// write instead of one per chunk.  Every word is still written whole, so
/// each 8-byte store stays failure-atomic; a word inside a run that did not
/// change is written with the content it already has.  Chunks outside the
/// map are skipped.  Returns the number of chunks newly marked.
pub fn set_many(map: &mut [u8], chunks: &[u64], mut persist: impl FnMut(usize, &[u8])) -> u64 {
    let mut newly = 0;
    // The pending run of changed words, as byte offsets `lo..hi`.
    let mut run: Option<(usize, usize)> = None;
    for &c in chunks {
        let Ok(Some((off, _))) = set(map, c) else {
            continue;
        };
        newly += 1;
        run = match run {
            Some((lo, hi)) if off >= lo && off <= hi => Some((lo, hi.max(off + WORD))),
            Some((lo, hi)) => {
                if let Some(words) = map.get(lo..hi) {
                    persist(lo, words);
                }
                Some((off, off + WORD))
            }
            None => Some((off, off + WORD)),
        };
    }
    if let Some((lo, hi)) = run {
        if let Some(words) = map.get(lo..hi) {
            persist(lo, words);
        }
    }
    newly
}

/// Chunks not in ascending order (see [`stage_many`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsorted;

/// Words [`stage_many`] hands to its caller at most at once.
const STAGE_WORDS: usize = 32;

/// What [`set_many`] would persist for `chunks`, without changing `map`:
/// each maximal run of adjacent words that marking `chunks` changes goes to
/// `persist(offset, words)` with the words' new content (cut into pieces of
/// at most 32 words).  The caller persists them, and once they are durable
/// marks the same chunks in `map` with [`set_many`]: the in-core map never
/// says more than pmem does.  `chunks` must be ascending (repeats allowed),
/// else nothing is handed out and `Unsorted` returned (a word staged twice
/// would lose the bits of its first staging); chunks outside the map are
/// skipped.  Returns the number of chunks not yet marked.
pub fn stage_many(map: &[u8], chunks: &[u64], mut persist: impl FnMut(usize, &[u8])) -> Result<u64, Unsorted> {
    if chunks.windows(2).any(|w| w[1] < w[0]) {
        return Err(Unsorted);
    }
    let mut buf = [0u8; STAGE_WORDS * WORD];
    // `buf[..len]` is `map[lo..lo + len]` with the bits staged so far.
    let (mut lo, mut len) = (0usize, 0usize);
    let mut newly = 0;
    for &c in chunks {
        let Ok((byte, mask)) = locate(map, c) else {
            continue;
        };
        if map.get(byte).is_none_or(|b| b & mask != 0) {
            continue;
        }
        let off = byte / WORD * WORD;
        if len == 0 || off >= lo + len {
            if len > 0 && (off != lo + len || len == buf.len()) {
                persist(lo, buf.get(..len).unwrap_or(&[]));
                len = 0;
            }
            if len == 0 {
                lo = off;
            }
            let (Some(dst), Some(src)) = (buf.get_mut(len..len + WORD), map.get(off..off + WORD)) else {
                continue;
            };
            dst.copy_from_slice(src);
            len += WORD;
        }
        let Some(i) = byte.checked_sub(lo) else {
            continue;
        };
        if let Some(b) = buf.get_mut(i) {
            if *b & mask == 0 {
                *b |= mask;
                newly += 1;
            }
        }
    }
    if len > 0 {
        persist(lo, buf.get(..len).unwrap_or(&[]));
    }
    Ok(newly)
}

/// Number of valid chunks among the first `nr_chunks`.
pub fn count(map: &[u8], nr_chunks: u64) -> Result<u64, OutOfRange> {
    check_len(map, nr_chunks)?;
    let full = (nr_chunks / 8) as usize;
    let whole: u64 = map
        .iter()
        .take(full)
        .map(|b| u64::from(b.count_ones()))
        .sum();
    let rest = map
        .get(full)
        .map_or(0, |b| b & ((1u16 << (nr_chunks % 8)) - 1) as u8);
    Ok(whole + u64::from(rest.count_ones()))
}

/// First chunk in `from..nr_chunks` that is not yet valid, if any: where
/// hydration resumes.
pub fn first_clear_from(map: &[u8], nr_chunks: u64, from: u64) -> Result<Option<u64>, OutOfRange> {
    check_len(map, nr_chunks)?;
    let mut chunk = from;
    while chunk < nr_chunks {
        let byte = map.get((chunk / 8) as usize).copied().unwrap_or(0xFF);
        let free = !byte & (0xFFu8 << (chunk % 8));
        if free != 0 {
            let found = chunk / 8 * 8 + u64::from(free.trailing_zeros());
            return Ok((found < nr_chunks).then_some(found));
        }
        chunk = (chunk / 8 + 1) * 8;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn set_returns_the_word_to_persist() {
        let mut map = [0u8; 16];
        assert_eq!(set(&mut map, 0), Ok(Some((0, [1, 0, 0, 0, 0, 0, 0, 0]))));
        assert_eq!(set(&mut map, 0), Ok(None));
        assert_eq!(
            set(&mut map, 63),
            Ok(Some((0, [1, 0, 0, 0, 0, 0, 0, 0x80])))
        );
        assert_eq!(
            set(&mut map, 64 + 9),
            Ok(Some((8, [0, 2, 0, 0, 0, 0, 0, 0])))
        );
        assert_eq!(
            u64::from_le_bytes(map[0..8].try_into().unwrap()),
            1 | 1 << 63
        );
        assert_eq!(u64::from_le_bytes(map[8..16].try_into().unwrap()), 1 << 9);
        assert_eq!(test(&map, 63), Ok(true));
        assert_eq!(test(&map, 62), Ok(false));
        assert_eq!(test(&map, 73), Ok(true));
    }

    #[test]
    fn out_of_range_is_an_error() {
        let mut map = [0u8; 16];
        assert_eq!(set(&mut map, 128), Err(OutOfRange));
        assert_eq!(test(&map, 128), Err(OutOfRange));
        assert_eq!(test(&map, u64::MAX), Err(OutOfRange));
        assert_eq!(count(&map, 129), Err(OutOfRange));
        assert_eq!(first_clear_from(&map, 129, 0), Err(OutOfRange));
        // A trailing partial word is not addressable.
        let mut odd = [0u8; 12];
        assert_eq!(set(&mut odd, 64), Err(OutOfRange));
        assert_eq!(
            set(&mut odd, 63),
            Ok(Some((0, [0, 0, 0, 0, 0, 0, 0, 0x80])))
        );
        assert_eq!(map, [0; 16]);
        assert_eq!(count(&map, 0), Ok(0));
        assert_eq!(count(&[], 0), Ok(0));
        assert_eq!(first_clear_from(&[], 0, 0), Ok(None));
    }

    #[test]
    fn count_and_first_clear() {
        let mut map = [0xFFu8; 16];
        assert_eq!(count(&map, 128), Ok(128));
        assert_eq!(count(&map, 77), Ok(77));
        assert_eq!(first_clear_from(&map, 128, 0), Ok(None));
        map[9] = !(1 << 3); // chunk 75
        assert_eq!(count(&map, 128), Ok(127));
        assert_eq!(count(&map, 75), Ok(75));
        assert_eq!(count(&map, 76), Ok(75));
        assert_eq!(first_clear_from(&map, 128, 0), Ok(Some(75)));
        assert_eq!(first_clear_from(&map, 128, 75), Ok(Some(75)));
        assert_eq!(first_clear_from(&map, 128, 76), Ok(None));
        assert_eq!(first_clear_from(&map, 75, 0), Ok(None));
        assert_eq!(first_clear_from(&map, 128, u64::MAX), Ok(None));
    }

    #[test]
    fn set_many_writes_each_run_of_changed_words_once() {
        let mut map = [0u8; 64];
        let mut writes: Vec<(usize, Vec<u8>)> = Vec::new();
        // Chunks 0..200 (words 0-3), 130 twice, then 448 (word 7) and one
        // outside the map.
        let mut chunks: Vec<u64> = (0..200).collect();
        chunks.extend([130, 448, 512]);
        let n = set_many(&mut map, &chunks, |off, w| writes.push((off, w.to_vec())));
        assert_eq!(n, 201);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].0, 0);
        assert_eq!(writes[0].1, map[0..32].to_vec());
        assert_eq!(writes[1], (56, map[56..64].to_vec()));
        assert_eq!(count(&map, 512), Ok(201));
        // Nothing new: nothing written.
        writes.clear();
        assert_eq!(set_many(&mut map, &[5, 448], |off, w| writes.push((off, w.to_vec()))), 0);
        assert!(writes.is_empty());
    }

    #[test]
    fn set_many_against_set() {
        // Whatever the order, the persisted words equal the map, and every
        // word that `set` would have persisted is covered.
        let mut rng = crate::Rng::new(11);
        for _ in 0..200 {
            let words = rng.range(1, 6) as usize;
            let mut map = vec![0u8; words * 8];
            let mut pmem = map.clone();
            for _ in 0..5 {
                let k = rng.range(0, 40) as usize;
                let mut chunks: Vec<u64> = (0..k).map(|_| rng.range(0, words as u64 * 64 + 8)).collect();
                if rng.range(0, 1) == 0 {
                    chunks.sort_unstable();
                }
                let mut model = map.clone();
                let mut want = 0;
                for &c in &chunks {
                    if let Ok(Some(_)) = set(&mut model, c) {
                        want += 1;
                    }
                }
                let got = set_many(&mut map, &chunks, |off, w| {
                    assert_eq!(off % 8, 0);
                    assert_eq!(w.len() % 8, 0);
                    pmem[off..off + w.len()].copy_from_slice(w);
                });
                assert_eq!(got, want);
                assert_eq!(map, model);
                assert_eq!(pmem, map);
            }
        }
    }

    #[test]
    fn stage_many_writes_what_set_many_sets_and_leaves_the_map() {
        // Sorted chunk lists (with repeats, runs longer than one piece,
        // chunks outside the map): staging then persisting gives pmem the
        // words `set_many` gives the map, and the map is untouched.
        let mut rng = crate::Rng::new(17);
        for _ in 0..300 {
            let words = rng.range(1, 80) as usize;
            let mut map = vec![0u8; words * 8];
            for b in map.iter_mut() {
                if rng.range(0, 3) == 0 {
                    *b = rng.range(0, 255) as u8;
                }
            }
            let mut pmem = map.clone();
            let k = rng.range(0, 3000) as usize;
            let mut chunks: Vec<u64> = (0..k).map(|_| rng.range(0, words as u64 * 64 + 70)).collect();
            chunks.sort_unstable();
            let before = map.clone();
            let mut pieces = 0;
            let staged = stage_many(&map, &chunks, |off, w| {
                assert_eq!(off % 8, 0);
                assert!(w.len() % 8 == 0 && !w.is_empty() && w.len() <= STAGE_WORDS * 8);
                pmem[off..off + w.len()].copy_from_slice(w);
                pieces += 1;
            })
            .unwrap();
            assert_eq!(map, before);
            let set = set_many(&mut map, &chunks, |_, _| {});
            assert_eq!(staged, set);
            assert_eq!(pmem, map);
            assert_eq!(pieces == 0, set == 0);
        }
        // Out of order: refused before anything is handed out.
        let map = [0u8; 16];
        let mut called = false;
        assert_eq!(stage_many(&map, &[70, 3], |_, _| called = true), Err(Unsorted));
        assert!(!called);
        // Only changed words, each run once: chunks 0 and 64 (words 0, 1),
        // 200 (word 3; word 2 unchanged, so a second run).
        let mut got = Vec::new();
        assert_eq!(
            stage_many(&[0u8; 32], &[0, 0, 64, 200], |off, w| got.push((off, w.to_vec()))),
            Ok(3)
        );
        assert_eq!(got, vec![(0, vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), (24, vec![0, 1, 0, 0, 0, 0, 0, 0])]);
    }

    #[test]
    fn random_against_a_bool_model() {
        let mut rng = crate::Rng::new(3);
        for _ in 0..50 {
            let words = rng.range(1, 8) as usize;
            let mut map = vec![0u8; words * 8];
            let mut model = vec![false; words * 64];
            for _ in 0..200 {
                let c = rng.range(0, model.len() as u64 - 1);
                let changed = set(&mut map, c).unwrap();
                assert_eq!(changed.is_some(), !model[c as usize]);
                if let Some((off, word)) = changed {
                    assert_eq!(off, c as usize / 64 * 8);
                    assert_eq!(word[..], map[off..off + 8]);
                }
                model[c as usize] = true;
                let n = rng.range(0, model.len() as u64);
                let from = rng.range(0, model.len() as u64);
                assert_eq!(
                    count(&map, n).unwrap(),
                    model[..n as usize].iter().filter(|&&b| b).count() as u64
                );
                let want = (from..n).find(|&i| !model[i as usize]);
                assert_eq!(first_clear_from(&map, n, from), Ok(want));
                let bits: Vec<bool> = (0..model.len() as u64)
                    .map(|i| test(&map, i).unwrap())
                    .collect();
                assert_eq!(bits, model);
            }
        }
    }
}
