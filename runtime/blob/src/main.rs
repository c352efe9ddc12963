//! The freestanding runtime image. Everything lives in the `dfpatch-runtime`
//! library; this crate only makes it a position-independent executable image
//! for `x86_64-unknown-none` with the layout `link.ld` describes.
#![no_std]
#![no_main]

use dfpatch_runtime as _;

// The library provides the entry point, the hook and the contract (kept by #[used] and KEEP in link.ld).

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing can be reported safely from here: end the process.
    dfpatch_runtime::sys::kill_self()
}
