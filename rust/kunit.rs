// SPDX-License-Identifier: GPL-2.0

//! KUnit suites, run when the module is loaded: the pure-logic cases shared
//! with the host (`logic::kunit_cases`) and checks that need the kernel
//! (the accelerated CRC32C of the shim against the pure one).

use kernel::prelude::*;

#[kunit_tests(dm_jsnap_logic)]
mod logic_cases {
    use crate::logic::kunit_cases as c;

    #[test]
    fn crc32c_check_value() -> Result<(), &'static str> {
        c::crc32c_check_value()
    }

    #[test]
    fn geometry_plan() -> Result<(), &'static str> {
        c::geometry_plan()
    }

    #[test]
    fn superblock_round_trip() -> Result<(), &'static str> {
        c::superblock_round_trip()
    }

    #[test]
    fn superblock_corruption() -> Result<(), &'static str> {
        c::superblock_corruption()
    }

    #[test]
    fn descriptor_round_trip() -> Result<(), &'static str> {
        c::descriptor_round_trip()
    }

    #[test]
    fn descriptor_corruption() -> Result<(), &'static str> {
        c::descriptor_corruption()
    }

    #[test]
    fn ring_wrap_and_fifo() -> Result<(), &'static str> {
        c::ring_wrap_and_fifo()
    }

    #[test]
    fn journal_space_slots() -> Result<(), &'static str> {
        c::journal_space_slots()
    }

    #[test]
    fn extent_carve() -> Result<(), &'static str> {
        c::extent_carve()
    }

    #[test]
    fn replay_wrap_and_holes() -> Result<(), &'static str> {
        c::replay_wrap_and_holes()
    }

    #[test]
    fn replay_rejects_corrupt() -> Result<(), &'static str> {
        c::replay_rejects_corrupt()
    }

    #[test]
    fn validity_map() -> Result<(), &'static str> {
        c::validity_map()
    }

    #[test]
    fn table_features() -> Result<(), &'static str> {
        c::table_features()
    }

    #[test]
    fn table_errors() -> Result<(), &'static str> {
        c::table_errors()
    }

    #[test]
    fn messages() -> Result<(), &'static str> {
        c::messages()
    }

    #[test]
    fn chunk_lock() -> Result<(), &'static str> {
        c::chunk_lock()
    }

    #[test]
    fn epoch_histories() -> Result<(), &'static str> {
        c::epoch_histories()
    }

    #[test]
    fn mirror_lookup_figures() -> Result<(), &'static str> {
        c::mirror_lookup_figures()
    }

    #[test]
    fn retire_rule() -> Result<(), &'static str> {
        c::retire_rule()
    }

    #[test]
    fn ring_end_and_replay_boundary() -> Result<(), &'static str> {
        c::ring_end_and_replay_boundary()
    }
}

#[kunit_tests(dm_jsnap_kernel)]
mod kernel_cases {
    use crate::ffi::pmem::crc32c;
    use crate::logic::crc;

    #[test]
    fn crc32c_matches_pure() {
        let mut buf = [0u8; 1000];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 7 + i / 13) as u8;
        }
        assert_eq!(crc32c(0, b"123456789"), 0xE306_9283);
        for len in [0usize, 1, 7, 8, 63, 512, 1000] {
            assert_eq!(crc32c(0, &buf[..len]), crc::crc32c(0, &buf[..len]));
        }
        let split = crc32c(crc32c(0, &buf[..333]), &buf[333..]);
        assert_eq!(split, crc::crc32c(0, &buf));
    }
}
