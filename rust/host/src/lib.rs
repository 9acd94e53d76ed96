//! Host build of dm-jsnap's pure logic.
//!
//! The modules listed in `rust/logic.rs` are compiled twice: into the
//! kernel module (as `mod logic`) and here, as an ordinary `no_std`
//! library, so that `cargo test` can exercise them. Every module uses only
//! `core`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

/// The logic modules, as the kernel module includes them.
#[path = "../../logic.rs"]
pub mod logic;
pub use logic::*;

/// A tiny deterministic generator for the randomised tests (xorshift64*).
#[cfg(test)]
pub(crate) struct Rng(u64);

#[cfg(test)]
impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish value in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    #[test]
    fn kunit_cases_pass_on_host() {
        let mut failed = std::vec::Vec::new();
        for (name, case) in crate::kunit_cases::CASES {
            if let Err(e) = case() {
                failed.push(std::format!("{name}: {e}"));
            }
        }
        assert!(failed.is_empty(), "{failed:?}");
        assert!(crate::kunit_cases::CASES.len() >= 10);
    }
}
