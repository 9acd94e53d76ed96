// SPDX-License-Identifier: GPL-2.0

//! KUnit suites, run when the module is loaded: the pure-logic cases shared
//! with the host (`logic::kunit_cases`) and checks that need the kernel
//! (the accelerated CRC32C of the shim against the pure one).

use kernel::prelude::*;

/// The logic suite: one KUnit case per entry of `for_each_case!`.
macro_rules! logic_suite {
    ($($name:ident),* $(,)?) => {
        #[kunit_tests(dm_jsnap_logic)]
        mod logic_cases {
            $(
                #[test]
                fn $name() -> Result<(), &'static str> {
                    crate::logic::kunit_cases::$name()
                }
            )*
        }
    };
}
crate::logic::kunit_cases::for_each_case!(logic_suite);

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
