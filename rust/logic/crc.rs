//! Software CRC32C (Castagnoli), used by the journal format.
//!
//! Reflected polynomial `0x82F63B78`, initial value and final xor `!0`, as in
//! iSCSI, ext4 and btrfs: `crc32c(0, b"123456789") == 0xE306_9283`. The value
//! passed in is a previous result, so checksums can be computed incrementally.
//! The tables are built at compile time; the loop processes eight bytes per
//! step ("slice-by-8").

const POLY: u32 = 0x82F6_3B78;

/// `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC of byte
/// `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = build_tables();

const fn build_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Extends the CRC32C `crc` (0 to start) with `data` and returns the result.
pub fn crc32c(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    let (blocks, rest) = data.as_chunks::<8>();
    for block in blocks {
        let [b0, b1, b2, b3, b4, b5, b6, b7] = *block;
        let lo = c ^ u32::from_le_bytes([b0, b1, b2, b3]);
        c = TABLES[7][usize::from(lo as u8)]
            ^ TABLES[6][usize::from((lo >> 8) as u8)]
            ^ TABLES[5][usize::from((lo >> 16) as u8)]
            ^ TABLES[4][usize::from((lo >> 24) as u8)]
            ^ TABLES[3][usize::from(b4)]
            ^ TABLES[2][usize::from(b5)]
            ^ TABLES[1][usize::from(b6)]
            ^ TABLES[0][usize::from(b7)];
    }
    for &b in rest {
        c = (c >> 8) ^ TABLES[0][usize::from(c as u8 ^ b)];
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Bit-at-a-time reference implementation.
    fn reference(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn check_values() {
        assert_eq!(crc32c(0, b""), 0);
        assert_eq!(crc32c(0, b"123456789"), 0xE306_9283);
        // RFC 3720 B.4 test vectors.
        assert_eq!(crc32c(0, &[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(0, &[0xffu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(0, &inc), 0x46DD_794E);
        let dec: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(0, &dec), 0x113F_DB5C);
    }

    #[test]
    fn matches_reference_and_is_incremental() {
        let mut rng = crate::Rng::new(7);
        let data: Vec<u8> = (0..1000).map(|_| rng.next() as u8).collect();
        for len in 0..data.len() {
            let whole = crc32c(0, &data[..len]);
            assert_eq!(whole, reference(&data[..len]), "len {len}");
            let split = (rng.next() as usize) % (len + 1);
            let part = crc32c(crc32c(0, &data[..split]), &data[split..len]);
            assert_eq!(part, whole, "len {len} split {split}");
        }
    }
}
